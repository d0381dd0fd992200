"""environment.yml (conda-forge) and pyproject.toml list the same dependencies."""

import re
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent


def _name(req: str) -> str:
    return re.split(r"[<>=!~ \[]", req.strip(), maxsplit=1)[0].lower()


def test_same_dependencies():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {_name(r) for r in project["dependencies"]} | {
        _name(r) for r in project["optional-dependencies"]["test"]
    }
    text = (ROOT / "environment.yml").read_text()
    deps = text.split("dependencies:", 1)[1].splitlines()
    conda = {_name(line.strip()[2:]) for line in deps if line.strip().startswith("- ")}
    conda -= {"python", "pip"}
    assert declared == conda, f"only in pyproject: {declared - conda}; only in environment.yml: {conda - declared}"
