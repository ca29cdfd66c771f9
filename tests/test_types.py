"""The packages listed in pyproject's [tool.mypy] `files` pass mypy and ruff, as configured there: a type or
lint regression fails the unit tests."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES: list[str] = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]["files"]


def test_every_package_is_checked() -> None:
    packages = {path.parent.name for path in ROOT.glob("*/__init__.py")} - {"tests"}
    assert packages == set(PACKAGES), f"not type-checked: {sorted(packages - set(PACKAGES))}"


def test_the_packages_type_check(monkeypatch) -> None:
    from mypy import api

    monkeypatch.chdir(ROOT)  # the configured `files` are relative to the project root

    stdout, stderr, status = api.run(["--config-file", str(ROOT / "pyproject.toml"),
                                      "--cache-dir", str(ROOT / ".mypy_cache")])
    assert status == 0, f"mypy over {', '.join(PACKAGES)}:\n{stdout}\n{stderr}"


def test_the_packages_pass_ruff() -> None:
    ruff = Path(sys.executable).with_name("ruff")  # the venv's ruff, installed with the test extra
    command = [str(ruff)] if ruff.exists() else [sys.executable, "-m", "ruff"]
    result = subprocess.run([*command, "check", "--no-cache", "--config", str(ROOT / "pyproject.toml"),
                             "--output-format", "concise", *PACKAGES],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"ruff check {' '.join(PACKAGES)}:\n{result.stdout}\n{result.stderr}"
