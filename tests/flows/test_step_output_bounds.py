"""What a step prints, logs and keeps open does not grow with the number of segments."""

from __future__ import annotations

from flows.calibrate import ARTIFACT_DIAGRAMS, ARTIFACT_ROWS, _markdown
from flows.cli import SHOW_EACH, calibration_summary


def _results(n: int) -> list[dict]:
    return [{"segment": f"product-{i:05d}", "model_version": "upstream", "status": "fitted", "method": "histogram",
             "n": 60, "ece": 0.01, "ece_high": 0.2 if i % 3 == 0 else 0.05, "passed": i % 3 != 0,
             "reasons": ["ece_upper_above_max"] if i % 3 == 0 else [], "diagram": f"/tmp/d-{i}.png",
             "drift": {"psi": None, "n_actual": 0, "stale": False}} for i in range(n)]


def test_many_calibration_groups_print_one_summary():
    summary = calibration_summary(_results(10_000))
    assert summary["groups"] == 10_000 and summary["refitted"] == 10_000
    assert summary["failed"] == 3334 and summary["passed"] == 6666
    assert len(summary["first_failed"]) == 10 and summary["first_failed"][0].startswith("upstream/product-00000")
    assert SHOW_EACH < 10_000


def test_the_calibration_artifact_is_bounded_and_shows_failures_first():
    markdown = _markdown(_results(10_000))
    rows = [line for line in markdown.splitlines() if line.startswith("| upstream |")]
    assert len(rows) == ARTIFACT_ROWS and all("| fail |" in row for row in rows)
    assert markdown.count("![") == ARTIFACT_DIAGRAMS and "9500 more group(s)" in markdown
    small = _markdown(_results(3))
    assert small.count("| upstream |") == 3 and "more group(s)" not in small


def test_batch_threads_bound_the_task_runner_and_size_the_pool(tmp_path):
    from flows.common import engine_for
    from flows.runners import configured_task_runner
    from store.db import dispose_engines
    from store.settings import SluiceSettings

    settings = SluiceSettings(home=tmp_path, batch_threads=7)
    assert configured_task_runner(settings)._max_workers == 7  # Prefect's default: a thread per task
    try:
        engine = engine_for(settings)
        assert engine.pool.size() >= 7 + 1  # a connection per task, and the flow's own
    finally:
        dispose_engines()


def test_unset_batch_threads_run_one_task_at_a_time_on_sqlite_and_four_on_a_server(tmp_path):
    from flows.runners import configured_task_runner
    from store.settings import SluiceSettings

    on_sqlite = SluiceSettings(home=tmp_path)
    assert on_sqlite.batch_threads is None and on_sqlite.resolved_batch_threads == 1
    assert configured_task_runner(on_sqlite)._max_workers == 1
    on_server = on_sqlite.variant(database_url="postgresql+psycopg://sluice@127.0.0.1:5432/sluice")
    assert on_server.resolved_batch_threads == 4 and configured_task_runner(on_server)._max_workers == 4
    assert on_server.variant(batch_threads=2).resolved_batch_threads == 2
