"""The pure public API (routing, calibration, the store's vocabulary) passes mypy, as configured in pyproject."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_pure_layers_type_check(monkeypatch) -> None:
    from mypy import api

    monkeypatch.chdir(ROOT)  # the configured `files` are relative to the project root

    stdout, stderr, status = api.run(["--config-file", str(ROOT / "pyproject.toml"),
                                      "--cache-dir", str(ROOT / ".mypy_cache")])
    assert status == 0, f"{stdout}\n{stderr}"
