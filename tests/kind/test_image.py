"""The service image: slim pinned base, non-root user, the services' requirements in step with
pyproject.toml, and every module the services import is installed in it."""

from __future__ import annotations

import ast
import importlib.metadata as md
import re
import sys
import tomllib

from packaging.requirements import Requirement

from kind_manifests import ROOT

DOCKERFILE = (ROOT / "Dockerfile").read_text()
IMAGE_REQUIREMENTS = [Requirement(line) for line in (ROOT / "cluster/kind/image-requirements.txt").read_text().splitlines()
                      if line.strip() and not line.startswith("#")]


def test_base_image_is_slim_and_pinned():
    (base,) = re.findall(r"^ARG PYTHON_IMAGE=(\S+)$", DOCKERFILE, re.M)
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", base), base
    froms = [line.split()[1] for line in DOCKERFILE.splitlines() if line.startswith("FROM ")]
    assert froms == ["${PYTHON_IMAGE}", "${PYTHON_IMAGE}"]


def test_runs_as_a_non_root_user():
    final_stage = DOCKERFILE.rsplit("\nFROM ", 1)[1]
    (user,) = re.findall(r"^USER (\S+)$", final_stage, re.M)
    uid = int(user.split(":")[0])
    assert uid >= 10000
    assert "HOST=0.0.0.0" in final_stage       # containers listen beyond loopback


def test_image_requirements_match_pyproject():
    deps = {Requirement(d).name.lower(): Requirement(d)
            for d in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]}
    for req in IMAGE_REQUIREMENTS:
        assert req.name.lower() in deps, f"{req.name} is in the image but not in pyproject.toml"
        assert str(req) == str(deps[req.name.lower()]), f"{req} differs from pyproject's {deps[req.name.lower()]}"


def _image_distributions() -> set[str]:
    """Distributions installed by these requirements, with their dependencies (extras included)."""
    seen, todo = set(), [(Requirement(str(r)).name.lower(), set(Requirement(str(r)).extras)) for r in IMAGE_REQUIREMENTS]
    while todo:
        name, extras = todo.pop()
        key = name.replace("_", "-")
        if (key, frozenset(extras)) in seen:
            continue
        seen.add((key, frozenset(extras)))
        try:
            requires = md.requires(name) or []
        except md.PackageNotFoundError:
            continue
        for spec in requires:
            r = Requirement(spec)
            env = [{"extra": e} for e in (extras or {""})]
            if r.marker is None or any(r.marker.evaluate(e) for e in env):
                todo.append((r.name.lower(), set(r.extras)))
    return {k for k, _ in seen}


def test_every_module_the_services_import_is_in_the_image():
    top_level: set[str] = set()
    for path in (ROOT / "services").rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for node in tree.body:         # module-level imports: what `python -m services.X` needs at start
            if isinstance(node, ast.Import):
                top_level |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                top_level.add(node.module.split(".")[0])
    third_party = {m for m in top_level if m not in sys.stdlib_module_names and m not in {"services", "__future__"}}
    providers = md.packages_distributions()
    installed = _image_distributions()
    missing = {m for m in third_party
               if not any(d.lower().replace("_", "-") in installed for d in providers.get(m, []))}
    assert missing == set(), f"imported by services but not installed in the image: {sorted(missing)}"
    assert "fastapi" in third_party


def test_dockerignore_lets_in_only_what_the_build_copies():
    lines = [l for l in (ROOT / ".dockerignore").read_text().splitlines() if l and not l.startswith("#")]
    assert lines[0] == "*"
    allowed = {l[1:].rstrip("/") for l in lines if l.startswith("!")}
    copied = set(re.findall(r"^COPY (?:--\S+ )*(\S+) ", DOCKERFILE, re.M)) - {"/opt/venv"}
    assert copied <= allowed
