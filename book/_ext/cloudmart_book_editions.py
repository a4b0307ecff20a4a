"""Two editions of the book: the learner edition (`make book`) and the instructor edition
(`make book-instructor`), chosen by ``CLOUDMART_BOOK_EDITION`` (book/build.py sets it).

Learner edition:

- a code cell tagged ``solution`` is shown as the exercise stub the learner's own notebook has
  (``# YOUR CODE HERE`` and the names later cells use, from ``grading.notebooks``), not as the
  worked answer; cells tagged ``solution-output``, ``hidden`` or ``instructor`` are not shown;
- the output of a cell that calls ``grading.check(`` is not shown either (the feedback on the
  worked answer would tell its parts);
- markdown cells tagged ``instructor`` or ``hidden`` are dropped from the mirrored notebooks and a
  ``solution`` markdown cell becomes "*Your answer here.*" (markdown cells are not part of the
  execution cache's key, so both editions share the cached executions);
- the notebooks a reader downloads from the site (``_sources``) are the student notebooks;
- ``book/instructor/`` (the facilitator guides) is not part of the site.

Instructor edition: every cell as it is, the instructor notes, and ``book/instructor/`` linked
from the landing page under "Instructor".
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any

from docutils import nodes

EDITION_ENV = "CLOUDMART_BOOK_EDITION"
EDITIONS = ("learner", "instructor")
HIDDEN_CODE_TAGS = ("solution-output", "hidden", "instructor")
HIDDEN_MARKDOWN_TAGS = {"instructor", "hidden", "solution-output"}
INSTRUCTOR_DIR = "instructor"
_INSTRUCTOR_TOC = "\n\n```{toctree}\n:caption: Instructor\n:maxdepth: 1\n\ninstructor/index\n```\n"


def edition() -> str:
    """The edition being built: ``CLOUDMART_BOOK_EDITION`` (default learner)."""
    value = os.environ.get(EDITION_ENV, "learner") or "learner"
    if value not in EDITIONS:
        raise ValueError(f"{EDITION_ENV}={value!r}; valid: {', '.join(EDITIONS)}")
    return value


def learner_notebook(nb: dict) -> dict:
    """The notebook as the learner edition mirrors it: markdown cells only are changed."""
    from grading.notebooks import MARKDOWN_STUB

    cells = []
    for cell in nb.get("cells", []):
        tags = set(cell.get("metadata", {}).get("tags", []) or [])
        if cell.get("cell_type") == "markdown":
            if tags & HIDDEN_MARKDOWN_TAGS:
                continue
            if "solution" in tags:
                cell = {**cell, "source": MARKDOWN_STUB}
        cells.append(cell)
    return {**nb, "cells": cells}


def mirror_bytes(path: pathlib.Path, data: bytes) -> bytes:
    """What the mirror of ``path`` holds in this edition (its bytes as they are, for the
    instructor edition and for anything but a notebook)."""
    if edition() != "learner" or path.suffix != ".ipynb":
        return data
    return (json.dumps(learner_notebook(json.loads(data)), indent=1, ensure_ascii=False) + "\n").encode()


def _student_stubs(path: pathlib.Path) -> dict[int, str]:
    """Cell index -> the stub the student notebook has in place of that solution cell."""
    import nbformat

    from grading.notebooks import SOLUTION_TAG, make_student_notebook

    nb = nbformat.read(path, as_version=4)
    student = make_student_notebook(nb)
    by_id = {c.get("id"): c.source for c in student.cells}
    return {i: by_id.get(c.get("id"), "# YOUR CODE HERE") for i, c in enumerate(nb.cells)
            if c.cell_type == "code" and SOLUTION_TAG in (c.metadata.get("tags") or [])}


def _strip_doctree(app, doctree: nodes.document) -> None:
    if edition() != "learner":
        return
    docname = app.env.docname
    source = pathlib.Path(app.env.doc2path(docname))
    stubs = _student_stubs(source) if source.suffix == ".ipynb" else {}
    for cell in list(doctree.findall(nodes.container)):
        classes = cell.get("classes", [])
        if cell.get("nb_element") != "cell_code":
            continue
        if any(f"tag_{t}" in classes for t in HIDDEN_CODE_TAGS):
            cell.parent.remove(cell)
            continue
        if "tag_solution" in classes:
            stub = stubs.get(cell.get("cell_index"), "# YOUR CODE HERE")
            block = nodes.literal_block(stub, stub, language="ipython3")
            note = nodes.paragraph(text="Exercise: write your answer in your own notebook "
                                        "(the worked answer is in the instructor edition).")
            replacement = nodes.container("", note, block, classes=["cell", "tag_exercise"])
            cell.replace_self(replacement)
            continue
        inputs = [n for n in cell.children if n.get("nb_element") == "cell_code_source"]
        if any("grading.check(" in n.astext() for n in inputs):
            for output in [n for n in cell.children if n.get("nb_element") == "cell_code_output"]:
                cell.remove(output)


def _add_instructor_toc(app, docname: str, source: list[str]) -> None:
    if edition() == "instructor" and docname == app.config.root_doc:
        source[0] += _INSTRUCTOR_TOC


def learner_sources(site_dir: pathlib.Path, notebooks_dir: pathlib.Path) -> list[pathlib.Path]:
    """Replace the notebooks a reader downloads (``_sources/notebooks/**.ipynb``) by the student
    notebooks, made from ``notebooks_dir``'s; returns what was written."""
    import nbformat

    from grading.notebooks import make_student_notebook

    written = []
    root = site_dir / "_sources" / "notebooks"
    for page in sorted(root.rglob("*.ipynb")) if root.is_dir() else []:
        original = notebooks_dir / page.relative_to(root)
        if not original.is_file():
            continue
        nbformat.write(make_student_notebook(nbformat.read(original, as_version=4)), page)
        written.append(page)
    return written


def setup(app) -> dict[str, Any]:
    app.connect("doctree-read", _strip_doctree)
    app.connect("source-read", _add_instructor_toc)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
