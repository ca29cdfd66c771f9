"""No statement binds more variables than a stock SQLite allows (32,766 since 3.32): ingest, score and route of
more items than that, on connections held to that limit (this machine's SQLite may be built with a higher one)."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest
from sqlalchemy import text

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_harness")]

STOCK_LIMIT = 32_766
N_ITEMS = STOCK_LIMIT + 7_234  # 40,000


@pytest.fixture
def stock_sqlite(tmp_path, monkeypatch):
    """A fresh SQLite store whose every connection binds at most STOCK_LIMIT variables per statement."""
    import store.db
    from store.db import dispose_engines
    from store.settings import get_settings

    monkeypatch.setenv("SLUICE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SLUICE_DATABASE_URL", raising=False)
    pragmas = store.db.sqlite_pragmas

    def pragmas_and_the_stock_limit(dbapi_connection, record) -> None:
        pragmas(dbapi_connection, record)
        dbapi_connection.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, STOCK_LIMIT)

    monkeypatch.setattr(store.db, "sqlite_pragmas", pragmas_and_the_stock_limit)
    get_settings.cache_clear()
    dispose_engines()
    yield
    get_settings.cache_clear()
    dispose_engines()


def test_more_items_than_a_stock_sqlite_binds_ingest_score_and_route(stock_sqlite, tmp_path):
    from flows.common import engine_for
    from flows.ingest import ingest_flow
    from flows.route import route_flow
    from flows.score import score_flow

    engine = engine_for(None)
    with engine.connect() as conn, pytest.raises(Exception, match="too many SQL variables"):
        conn.exec_driver_sql("select 1 where 1 in (" + ",".join(["?"] * (STOCK_LIMIT + 1)) + ")",
                             tuple(range(STOCK_LIMIT + 1)))  # the limit holds: one variable too many fails
    confidence = np.random.default_rng(5).uniform(0.5, 1.0, N_ITEMS)
    path = tmp_path / "items.jsonl"
    path.write_text("".join(json.dumps({"id": f"v-{i:06d}", "segment": f"s{i % 3}", "text": f"order {i}",
                                        "prediction": "a", "confidence": float(c)}) + "\n"
                            for i, c in enumerate(confidence)))
    assert ingest_flow(str(path))["accepted"] == N_ITEMS
    with engine.begin() as conn:  # as an earlier release left them: received, for the score step to pass through
        conn.execute(text("delete from predictions"))
        conn.execute(text("update item_states set state = 'received'"))
    assert score_flow()["upstream"] == N_ITEMS
    assert route_flow(cycle=1)["routed"] == N_ITEMS
    with engine.connect() as conn:
        assert conn.execute(text("select count(distinct item_id) from routing_decisions")).scalar_one() == N_ITEMS
