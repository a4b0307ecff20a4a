"""Regenerate environment.yml (conda / Binder) from pyproject.toml: `make environment.yml`."""
import pathlib
import tomllib

ROOT = pathlib.Path(__file__).resolve().parents[1]
HEADER = [
    "# Conda / Binder environment. Generated from pyproject.toml by `make environment.yml`;",
    "# tests/test_environment.py checks that the two agree.",
    "name: cloudmart-course",
    "channels:",
    "  - conda-forge",
    "dependencies:",
    "  - python=3.11",
    "  - pip",
    "  - nodejs>=20",
    "  - pip:",
]


def main() -> None:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    lines = HEADER + [f'      - "{d}"' for d in deps] + ['      - "-e ."']
    (ROOT / "environment.yml").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
