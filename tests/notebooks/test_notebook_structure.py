"""Every Day 1 notebook follows the lesson template and is stored executed, ready for nbval."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
DAY1 = sorted((NOTEBOOKS / "day1-microservices").glob("0*.ipynb"))
ALL = [NOTEBOOKS / "00-start-here.ipynb", NOTEBOOKS / "00-preflight.ipynb", *DAY1]
EXPECTED_DAY1 = ["01-monolith-vs-microservices", "02-service-decomposition", "03-microservice-patterns",
                 "04-lab1-capacity-and-cost", "05-communication-patterns", "06-challenge-architecture-design"]


def _read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def _code(nb) -> list:
    return [c for c in nb.cells if c.cell_type == "code"]


def test_day1_has_its_six_notebooks():
    assert [p.stem for p in DAY1] == EXPECTED_DAY1


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.stem)
def test_stored_executed_without_errors(path):
    code = _code(_read(path))
    assert code and all(c.execution_count is not None for c in code), "store notebooks executed"
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert not errors, [f"{e.ename}: {e.evalue}" for e in errors]


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.stem)
def test_widgets_and_live_timings_are_not_compared(path):
    for cell in _code(_read(path)):
        src = cell.source
        if cell.outputs and ("@interact" in src or re.search(r"\.load\(", src)):
            assert "# NBVAL_IGNORE_OUTPUT" in src, f"cell needs # NBVAL_IGNORE_OUTPUT:\n{src[:200]}"


@pytest.mark.parametrize("path", DAY1, ids=lambda p: p.stem)
def test_lesson_template(path):
    nb = _read(path)
    markdown = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert "**You will be able to**" in markdown, "learning objectives"
    assert "```mermaid" in markdown, "a Mermaid diagram"
    assert "## Summary" in markdown
    code = _code(nb)
    solutions = [i for i, c in enumerate(code) if "solution" in c.metadata.get("tags", [])]
    assert solutions, "an exercise with a solution cell tagged `solution`"
    after = "\n".join(c.source for c in code[solutions[-1] + 1:])
    assert "grading.check(" in after, "the solution is checked by grading.check"
    seeded = [c for c in code if ("seed=" in c.source or "simulate_" in c.source)
              and "NBVAL_IGNORE_OUTPUT" not in c.source and c.outputs]
    assert seeded, "at least one seeded simulation whose output nbval compares"
    assert any("@interact" in c.source for c in code), "a widget to drive the simulation"


@pytest.mark.parametrize("path", [p for p in DAY1 if not p.stem.startswith("06")], ids=lambda p: p.stem)
def test_live_cells_assert_what_must_hold(path):
    code = _code(_read(path))
    assert any("connect(" in c.source for c in code), "the lesson measures the live CloudMart"
    live = [i for i, c in enumerate(code) if "connect(" in c.source]
    assert any(c.source.lstrip().startswith("assert") or "\nassert " in c.source for c in code[live[0]:]), \
        "live measurements are followed by asserts"


def _without_magics(source: str) -> str:
    """The cell with each IPython magic or shell line replaced by ``pass`` (same indentation)."""
    return "\n".join(ln[:len(ln) - len(ln.lstrip())] + "pass"
                     if ln.lstrip().startswith(("%", "!")) else ln for ln in source.splitlines())


def _bound_names(source: str) -> set[str]:
    """Names a cell binds at top level or in its loops and blocks (assignments, loop targets,
    with-as, walrus), not function, class or import names; IPython magics are skipped."""
    import ast

    code = _without_magics(source)
    try:
        tree = ast.parse(code)
    except SyntaxError:  # top-level await: parse it inside an async function
        tree = ast.parse("async def _cell():\n" + "\n".join("    " + ln for ln in code.splitlines()))
    names: set[str] = set()

    def targets(node):
        for sub in ast.walk(node):
            if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store):
                names.add(sub.id)

    for node in ast.walk(tree):
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
            for t in (node.targets if isinstance(node, ast.Assign) else [node.target]):
                targets(t)
        elif isinstance(node, (ast.For, ast.AsyncFor, ast.comprehension)):
            if not isinstance(node, ast.comprehension):
                targets(node.target)
        elif isinstance(node, ast.withitem) and node.optional_vars is not None:
            targets(node.optional_vars)
        elif isinstance(node, ast.NamedExpr):
            targets(node.target)
    return names - {"_cell"}


def _asserted_names(source: str) -> set[str]:
    import ast

    code = _without_magics(source)
    try:
        tree = ast.parse(code)
    except SyntaxError:
        tree = ast.parse("async def _cell():\n" + "\n".join("    " + ln for ln in code.splitlines()))
    return {n.id for a in ast.walk(tree) if isinstance(a, ast.Assert)
            for n in ast.walk(a) if isinstance(n, ast.Name)}


def _is_widget(source: str) -> bool:
    return "@interact" in source or "interact(" in source or "ipywidgets" in source


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.stem)
def test_every_ignored_live_cell_is_followed_by_an_assert_on_what_it_bound(path):
    """nbval does not compare an ignored cell's output, so an assert (in the cell or after it)
    must check something the cell computed; a cell that binds nothing must assert itself."""
    code = _code(_read(path))
    problems = []
    for i, cell in enumerate(code):
        src = cell.source
        if "NBVAL_IGNORE_OUTPUT" not in src or _is_widget(src):
            continue
        bound = _bound_names(src)
        asserted = set().union(*(_asserted_names(c.source) for c in code[i:]))
        if not bound & asserted:
            problems.append(f"cell {i}: binds {sorted(bound) or 'nothing'}, none asserted:\n"
                            f"{src[:160]}")
    assert not problems, "\n\n".join(problems)


def test_the_assert_rule_catches_an_unchecked_cell():
    """Negative control of the rule above."""
    assert _bound_names("# NBVAL_IGNORE_OUTPUT\nr = cm.load(rps=1)\nfor x in y: pass") == {"r", "x"}
    assert _asserted_names("assert r.summary['ok'] > 0") == {"r"}
    assert not _bound_names("print(1)") & _asserted_names("assert y")
    assert "nats_ms" in _bound_names("nats_ms = []\nawait nc.close()")


EVERY_NOTEBOOK = sorted(NOTEBOOKS.glob("**/*.ipynb"))
_TITLE_CALL = re.compile(r"\.(?:set_title|suptitle|title)\(\s*(.*)")


def _computed(argument: str) -> bool:
    """A title argument is computed when it is an f-string, a translated template with a field
    (`t("… {gap:.0%} …", gap=…)`), or an expression — never a bare string literal."""
    arg = argument.lstrip()
    if re.match(r"[rRbB]?[fF]['\"]", arg):
        return True
    literal = re.match(r"""(?:t\(\s*)?(['"])(.*?)\1""", arg)
    if literal is None:
        return True                       # a variable or an expression
    return arg.startswith("t(") and re.search(r"\{\w+", literal.group(2)) is not None


@pytest.mark.parametrize("path", EVERY_NOTEBOOK, ids=lambda p: str(p.relative_to(NOTEBOOKS)))
def test_every_plot_title_is_computed(path):
    """Plot titles state what the run measured, so none is a hard-coded string (the lesson standard)."""
    for cell in _code(_read(path)):
        for argument in _TITLE_CALL.findall(cell.source):
            assert _computed(argument), f"{path.name}: a plot title must be computed: {argument[:80]}"


def test_the_title_rule_tells_computed_from_literal():
    assert _computed('f"p99 {x:.1f} ms")') and _computed("title)") and _computed('t("within {gap:.0%}", gap=g)')
    assert not _computed('"Latency vs load")') and not _computed('t("Latency vs load")')


def _machine_path_pattern() -> re.Pattern:
    """Folders a stored output must not name: those of the machine running the check (its home,
    temporary folder, checkout and interpreter) and the usual home-folder roots of any other."""
    import sys
    import sysconfig
    import tempfile

    here = {Path.home(), Path(tempfile.gettempdir()), ROOT.parent, Path(sys.prefix),
            Path(sysconfig.get_paths()["purelib"])}
    folders = sorted({re.escape(str(p.resolve()) + "/") for p in here if str(p) not in ("", "/")}, key=len, reverse=True)
    return re.compile("|".join(folders + [r"/home/[^/\s]+/", r"/Users/[^/\s]+/", r"site-packages/"]))


MACHINE_PATH = _machine_path_pattern()
EVERY_NOTEBOOK = sorted(NOTEBOOKS.glob("**/*.ipynb"))


@pytest.mark.parametrize("path", EVERY_NOTEBOOK, ids=lambda p: p.stem)
def test_stored_outputs_name_no_path_of_the_machine_that_ran_them(path):
    """A stored output is read by every learner: a home folder, temporary folder or virtualenv
    path of whoever executed the notebook says nothing to them (the cell prints theirs when run)."""
    found = []
    for i, cell in enumerate(_code(_read(path))):
        for out in cell.outputs:
            text = str(out.get("text", "")) + str(out.get("data", {}))
            found += [(i, m.group(0)) for m in MACHINE_PATH.finditer(text)]
    assert not found, found
