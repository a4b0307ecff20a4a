"""The conda/Binder environment mirrors pyproject.toml, so Binder users get what pip users get."""
import pathlib
import tomllib

import yaml
from packaging.requirements import Requirement

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _pyproject_requirements() -> dict[str, Requirement]:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return {Requirement(d).name.lower(): Requirement(d) for d in deps}


def _environment_requirements() -> dict[str, Requirement]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_sections = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(pip_sections) == 1, "environment.yml needs exactly one pip: section"
    reqs = [r for r in pip_sections[0] if not r.startswith("-e")]
    return {Requirement(r).name.lower(): Requirement(r) for r in reqs}


def test_environment_yml_mirrors_pyproject():
    py, env = _pyproject_requirements(), _environment_requirements()
    assert sorted(set(py) - set(env)) == [], "in pyproject.toml but missing from environment.yml"
    assert sorted(set(env) - set(py)) == [], "in environment.yml but not in pyproject.toml"
    differing = {n: (str(py[n]), str(env[n])) for n in py if str(py[n]) != str(env[n])}
    assert differing == {}, f"version specifiers differ: {differing}"


def test_environment_yml_pins_python_311():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert "python=3.11" in env["dependencies"]
