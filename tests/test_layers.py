"""The layering of docs/architecture.md, enforced: every import (module level or inside a function) of every package module
points down the list ui, flows, services, labeling, scoring, store, routing, calibration, within the table's exceptions,
and
the few third-party packages that belong to one module stay there.

The checker is plain `ast`; it is tested on a scratch tree with an upward import so that a build adding one fails.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# What each package may import of the others (docs/architecture.md). Arrows only point down the list.
ALLOWED: dict[str, frozenset[str]] = {
    "ui": frozenset({"services", "labeling", "store", "routing", "calibration"}),  # flows: by deployment
    "flows": frozenset({"services", "labeling", "scoring", "store", "routing", "calibration"}),
    # what flows and console share: store reads composed with the pure logic (never labeling: no Label Studio)
    "services": frozenset({"store", "routing", "calibration"}),
    "labeling": frozenset({"store", "routing", "calibration"}),
    "scoring": frozenset({"store"}),
    "store": frozenset({"routing"}),  # for its value types (the policy model)
    "routing": frozenset({"calibration"}),
    "calibration": frozenset(),
}
# Third-party packages confined to some modules: pure layers never touch a database, the network or a server.
CONFINED: dict[str, tuple[str, ...]] = {
    "label_studio_sdk": ("labeling/client.py",),
    "netcal": ("calibration/netcal_adapter.py",),
    "torch": ("calibration/netcal_adapter.py",),
    "streamlit": ("ui/",),
    "prefect": ("flows/",),
    "sqlalchemy": ("ui/", "flows/", "services/", "labeling/", "scoring/", "store/"),
    "sqlmodel": ("ui/", "flows/", "services/", "labeling/", "scoring/", "store/"),
    "alembic": ("store/",),
    "requests": ("labeling/",),
    "httpx": ("labeling/",),
}


def imported_modules(source: str) -> list[tuple[int, str]]:
    """(line, top-level module) of every absolute import in `source`."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module.split(".")[0]))
    return found


def violations(root: Path) -> list[str]:
    """Every import under `root` that breaks the layering, as "path:line: package imports module"."""
    problems = []
    for package, allowed in ALLOWED.items():
        for path in sorted((root / package).rglob("*.py")):
            relative = path.relative_to(root).as_posix()
            if "/migrations/" in relative:
                continue  # Alembic's generated scripts import only sqlalchemy, sqlmodel and alembic
            for line, module in imported_modules(path.read_text()):
                if module in ALLOWED and module != package and module not in allowed:
                    problems.append(f"{relative}:{line}: {package} imports {module}")
                homes = CONFINED.get(module)
                if homes is not None and not relative.startswith(homes):
                    problems.append(f"{relative}:{line}: {module} belongs to {', '.join(homes)} only")
    return problems


def test_every_import_points_down_the_layers() -> None:
    assert violations(ROOT) == []


def test_the_contract_allows_only_the_arrows_the_code_uses() -> None:
    """Narrow: an arrow nothing uses is one a later change could start using unseen; drop it, or use it."""
    used: dict[str, set[str]] = {package: set() for package in ALLOWED}
    for package in ALLOWED:
        for path in (ROOT / package).rglob("*.py"):
            if "/migrations/" not in path.as_posix():
                used[package] |= {m for _, m in imported_modules(path.read_text()) if m in ALLOWED and m != package}
    assert {p: sorted(a) for p, a in ALLOWED.items()} == {p: sorted(u) for p, u in used.items()}


@pytest.mark.parametrize(
    "path, source, expected",
    [
        ("routing/decide.py", "from store.models import Item\n", "routing/decide.py:1: routing imports store"),
        ("store/db.py", "def f():\n    import flows.cli\n", "store/db.py:2: store imports flows"),
        ("ui/app.py", "from flows.route import route_flow\n", "ui/app.py:1: ui imports flows"),
        ("services/audit.py", "from flows.risk import guard_halts\n", "services/audit.py:1: services imports flows"),
        ("services/x.py", "import labeling.client\n", "services/x.py:1: services imports labeling"),
        ("store/figures.py", "from services.audit import audit_estimates\n", "store/figures.py:1: store imports services"),
        ("calibration/metrics.py", "import sqlalchemy\n", "calibration/metrics.py:1: sqlalchemy belongs to"),
        ("flows/push.py", "from label_studio_sdk import Client\n", "flows/push.py:1: label_studio_sdk belongs to"),
    ],
)
def test_an_upward_or_misplaced_import_fails_the_check(tmp_path: Path, path: str, source: str,
                                                       expected: str) -> None:
    for package in ALLOWED:
        (tmp_path / package).mkdir()
    (tmp_path / path).write_text(source)
    (tmp_path / "flows" / "fine.py").write_text("from store.models import Item\nimport numpy\n")
    found = violations(tmp_path)
    assert len(found) == 1 and found[0].startswith(expected), found


# The store is the one layer that knows the schema: above it, the flows, the services and the console name an engine
# (or parse a database URL) and never build or run a statement.
NO_SQL = ("flows", "services", "labeling", "scoring", "ui")
SQLALCHEMY_NAMES_ABOVE_THE_STORE = frozenset({"Engine", "make_url"})
STATEMENT_CALLS = frozenset({"connect", "begin", "execute", "exec", "scalars", "exec_driver_sql"})


def sql_outside_the_store(root: Path) -> list[str]:
    """Every SQLAlchemy or SQLModel import beyond an engine's type, and every connection or statement call, in the
    packages above the store, as "path:line: what"."""
    problems = []
    for package in NO_SQL:
        for path in sorted((root / package).rglob("*.py")):
            relative = path.relative_to(root).as_posix()
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in (
                        "sqlalchemy", "sqlmodel"):
                    extra = sorted({a.name for a in node.names} - SQLALCHEMY_NAMES_ABOVE_THE_STORE)
                    if extra or node.module.split(".")[0] == "sqlmodel":
                        problems.append(f"{relative}:{node.lineno}: imports {', '.join(extra)} from {node.module}")
                elif isinstance(node, ast.Import) and any(a.name.split(".")[0] in ("sqlalchemy", "sqlmodel")
                                                          for a in node.names):
                    problems.append(f"{relative}:{node.lineno}: imports {node.names[0].name}")
                elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                      and node.func.attr in STATEMENT_CALLS):
                    problems.append(f"{relative}:{node.lineno}: calls .{node.func.attr}()")
    return problems


def test_the_flows_services_and_console_build_no_sql() -> None:
    assert sql_outside_the_store(ROOT) == []


def test_a_statement_above_the_store_fails_the_check(tmp_path: Path) -> None:
    for package in NO_SQL:
        (tmp_path / package).mkdir()
    (tmp_path / "flows" / "x.py").write_text("from sqlalchemy import Engine, select\n"
                                             "def f(engine):\n    with engine.connect() as conn:\n        pass\n")
    assert sql_outside_the_store(tmp_path) == ["flows/x.py:1: imports select from sqlalchemy",
                                               "flows/x.py:3: calls .connect()"]
