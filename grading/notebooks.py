"""Student notebooks: the solution notebooks with every solution stripped.

In the solution notebooks (``notebooks/``) a cell whose metadata ``tags`` contain ``solution``
holds a worked answer. :func:`make_student_notebooks` writes a copy of every notebook in which

- a ``solution`` code cell becomes a stub: ``# YOUR CODE HERE`` and ``name = ...`` for every
  name the solution assigns at top level that a later cell uses (so the ``grading.check(...)``
  cell after it still runs and says the answer is missing), or ``raise NotImplementedError``
  if there is none;
- a ``solution`` markdown cell becomes ``*Your answer here.*``;
- a cell tagged ``solution-output``, ``hidden`` or ``instructor`` is removed;
- every output, execution count and saved widget state is cleared, because a solved
  notebook's outputs (feedback of a check, a printed plan) would give the answer away.

:func:`find_leaks` lists solution lines that still appear in a student notebook.

With a roster (:func:`read_roster`) and an instructor secret, :func:`make_student_notebooks`
writes one copy per learner, ``OUT/<learner_id>/…``, each stamped (:func:`stamp_notebook`) with
the learner id and its signature, which :func:`grading.variant` turns into the learner's
exercise variants.
"""

from __future__ import annotations

import ast
import csv
import re
import shutil
from pathlib import Path

import nbformat

from grading import variants

__all__ = [
    "SOLUTION_TAG",
    "read_roster",
    "read_stamp",
    "stamp_notebook",
    "REMOVED_TAGS",
    "find_leaks",
    "make_student_notebook",
    "make_student_notebooks",
    "solution_lines",
]

SOLUTION_TAG = "solution"
REMOVED_TAGS = frozenset({"solution-output", "hidden", "instructor"})
STUB_MARKER = "# YOUR CODE HERE"
MARKDOWN_STUB = "*Your answer here.*"

_TOKEN = re.compile(r"\w+|[^\w\s]")


def _tags(cell: nbformat.NotebookNode) -> set[str]:
    return set(cell.get("metadata", {}).get("tags", []) or [])


def _assigned_names(source: str) -> list[str]:
    """Top-level names a cell assigns, in order of first assignment (empty if unparsable)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    names: list[str] = []

    def add(target: ast.expr) -> None:
        if isinstance(target, ast.Name) and target.id not in names:
            names.append(target.id)
        elif isinstance(target, (ast.Tuple, ast.List)):
            for elt in target.elts:
                add(elt)

    for node in tree.body:
        if isinstance(node, ast.Assign):
            for target in node.targets:
                add(target)
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
            add(node.target)
    return names


def _stub(cell: nbformat.NotebookNode, later_code: str) -> str:
    if cell.cell_type == "markdown":
        return MARKDOWN_STUB
    # Keep only the names later cells use (e.g. ``answer``): the others would sketch the
    # solution's steps.
    names = [n for n in _assigned_names(cell.source)
             if re.search(rf"(?<![\w.]){re.escape(n)}\b", later_code)]
    if names:
        return "\n".join([STUB_MARKER] + [f"{name} = ..." for name in names])
    return f"{STUB_MARKER}\nraise NotImplementedError"


def make_student_notebook(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Return a student copy of the notebook ``nb`` (``nb`` itself is not modified)."""
    out = nbformat.from_dict(nb)
    cells = []
    for index, cell in enumerate(out.cells):
        tags = _tags(cell)
        if tags & REMOVED_TAGS:
            continue
        if SOLUTION_TAG in tags:
            later_code = "\n".join(c.source for c in out.cells[index + 1:]
                                   if c.cell_type == "code" and not _tags(c) & (
                                       REMOVED_TAGS | {SOLUTION_TAG}))
            cell.source = _stub(cell, later_code)
            cell.metadata["tags"] = [t for t in cell.metadata.get("tags", [])
                                     if t != SOLUTION_TAG] + ["exercise"]
            cell.pop("attachments", None)
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        cells.append(cell)
    out.cells = cells
    out.metadata.pop("widgets", None)
    return out


# Files of the notebook folders a learner does not need: test hooks and caches.
_NOT_COPIED = frozenset({"conftest.py", "nbval_sanitize.cfg"})


def stamp_notebook(nb: nbformat.NotebookNode, learner_id: str,
                   signature: str) -> nbformat.NotebookNode:
    """Return ``nb`` stamped for one learner: the stamp in the metadata and a first code cell
    (tagged ``learner-stamp``) that sets it in the kernel. An earlier stamp is replaced."""
    variants.check_stamp(learner_id, signature)
    out = nbformat.from_dict(nb)
    out.cells = [c for c in out.cells if variants.STAMP_TAG not in _tags(c)]
    cell = nbformat.v4.new_code_cell(
        "# Your exercise variant: the numbers of your exercises are yours. Leave this cell as it is.\n"
        "import grading\n"
        f"grading.stamp({learner_id!r}, {signature!r})",
        metadata={"tags": [variants.STAMP_TAG], "editable": False, "deletable": False})
    out.cells.insert(0, cell)
    out.metadata[variants.METADATA_KEY] = {"learner_id": learner_id, "signature": signature}
    return out


def read_stamp(nb: nbformat.NotebookNode) -> variants.Stamp | None:
    """The stamp in ``nb``'s metadata, ``None`` if it has none; ``ValueError`` if malformed."""
    meta = nb.metadata.get(variants.METADATA_KEY)
    if meta is None:
        return None
    if not isinstance(meta, dict):
        raise ValueError("the notebook's learner stamp is malformed")
    return variants.Stamp(*variants.check_stamp(meta.get("learner_id"), meta.get("signature")))


def read_roster(path: str | Path) -> list[str]:
    """The learner ids of a roster CSV (a header row with a ``learner_id`` column; other
    columns, e.g. a name, are ignored). ``ValueError`` names the row of a bad or repeated id."""
    path = Path(path)
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or "learner_id" not in reader.fieldnames:
            raise ValueError(f"roster {str(path)!r} needs a header row with a 'learner_id' column")
        ids: list[str] = []
        for row_number, row in enumerate(reader, start=2):
            learner_id = (row.get("learner_id") or "").strip()
            try:
                variants.check_learner_id(learner_id)
            except ValueError as err:
                raise ValueError(f"roster {str(path)!r} row {row_number}: {err}") from None
            if learner_id in ids:
                raise ValueError(f"roster {str(path)!r} row {row_number}: learner id "
                                 f"{learner_id!r} appears twice")
            ids.append(learner_id)
    if not ids:
        raise ValueError(f"roster {str(path)!r} lists no learner")
    return ids


def make_student_notebooks(src_dir: str | Path, out_dir: str | Path,
                           roster: list[str] | None = None,
                           secret: str | bytes | None = None,
                           transform=None) -> list[Path]:
    """Write a student version of every ``*.ipynb`` under ``src_dir`` to the same relative path
    under ``out_dir``, and copy the files the notebooks read (data, images); return the paths of
    the student notebooks.

    With ``roster`` (learner ids) and the instructor ``secret``, write one stamped copy per
    learner under ``out_dir/<learner_id>/`` instead.

    ``transform(nb, relative_path)``, if given, is applied to each solution notebook first (e.g.
    :func:`course_i18n.notebooks.localiser`, which translates it).

    Hidden files and folders, ``__pycache__`` and the notebook tests' own files are left out.
    Raises ``ValueError`` if ``src_dir`` is not a folder or ``out_dir`` lies inside it.
    """
    src, out = Path(src_dir).resolve(), Path(out_dir).resolve()
    if not src.is_dir():
        raise ValueError(f"src_dir={str(src_dir)!r} is not a folder")
    if out == src or src in out.parents:
        raise ValueError(f"out_dir={str(out_dir)!r} must not lie inside src_dir={str(src_dir)!r}")
    if roster is not None:
        if secret is None:
            raise ValueError("a roster needs the instructor secret to sign the learner ids")
        written = []
        for learner_id in roster:
            signature = variants.sign(learner_id, secret)
            for path in make_student_notebooks(src, out / learner_id, transform=transform):
                nb = nbformat.read(path, as_version=4)
                nbformat.write(stamp_notebook(nb, learner_id, signature), path)
                written.append(path)
        return written
    written = []
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src)
        if (not path.is_file() or path.name in _NOT_COPIED
                or any(p.startswith(".") or p == "__pycache__" for p in rel.parts)):
            continue
        target = out / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".ipynb":
            nb = nbformat.read(path, as_version=4)
            if transform is not None:
                nb = transform(nb, rel)
            nbformat.write(make_student_notebook(nb), target)
            written.append(target)
        else:
            shutil.copy2(path, target)
    return written


def _significant(line: str) -> bool:
    return len(_TOKEN.findall(line)) >= 3


def solution_lines(nb: nbformat.NotebookNode) -> set[str]:
    """Stripped lines of the notebook's solution cells with at least 3 tokens, excluding lines
    that also appear in its other cells (shared text such as an import is no secret)."""
    secret, shared = set(), set()
    for cell in nb.cells:
        lines = {ln.strip() for ln in cell.source.splitlines() if _significant(ln)}
        if SOLUTION_TAG in _tags(cell) or _tags(cell) & REMOVED_TAGS:
            secret |= lines
        else:
            shared |= lines
    return secret - shared


def find_leaks(solution_nb: nbformat.NotebookNode, student_path: str | Path) -> list[str]:
    """Solution lines of ``solution_nb`` that occur anywhere in the file ``student_path``
    (sources, outputs and metadata alike)."""
    text = Path(student_path).read_text(encoding="utf-8")
    # Compare against the JSON-decoded text too, so escaping cannot hide a leak.
    student = nbformat.reads(text, as_version=4)
    decoded = "\n".join(
        [c.source for c in student.cells]
        + [str(o) for c in student.cells if c.cell_type == "code" for o in c.outputs]
        + [str(student.metadata)]
    )
    return sorted(ln for ln in solution_lines(solution_nb) if ln in text or ln in decoded)
