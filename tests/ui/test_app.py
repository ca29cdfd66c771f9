"""AppTest runs of the console against an empty store and stores the real flows filled (see conftest): no
exceptions, and the figures counted beside it with plain SQL (tests/ui/expected.py) or recorded by the flows."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.ui import expected
from tests.ui.conftest import MORE_AUDITS_COMMENT, answer_open_tasks
from ui.views import calibration, models, overview, whatif

flows = pytest.mark.integration
APP = str(Path(__file__).resolve().parents[2] / "ui" / "app.py")


def _run() -> AppTest:
    """The console, signed in as an operator (sign-in itself is tested in test_policy_page.py)."""
    from store.vocab import Role
    from ui.auth import SESSION_KEY, SignedIn

    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state[SESSION_KEY] = SignedIn("ops", Role.OPERATOR, "password")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _metrics(at: AppTest) -> dict[str, str]:
    return {metric.label: metric.value for metric in at.metric}


def _texts(elements) -> list[str]:
    return [element.value for element in elements]


@pytest.fixture
def streamlit_caches():
    import streamlit as st

    yield
    st.cache_data.clear()
    st.cache_resource.clear()


def test_empty_store_shows_friendly_empty_states_on_every_page(empty_engine, streamlit_caches) -> None:
    at = _run()
    assert at.title[0].value == "Overview"
    assert _texts(at.info) == [overview.EMPTY_POLICY, overview.EMPTY_ROUTING]
    assert not at.metric
    at.switch_page("views/calibration.py").run()
    assert not at.exception and at.title[0].value == "Calibration"
    assert _texts(at.info) == [calibration.EMPTY]
    at.switch_page("views/models.py").run()
    assert not at.exception and at.title[0].value == "Models & cycles"
    assert _texts(at.info) == [models.EMPTY_MODELS, models.EMPTY_CYCLES, models.EMPTY_BIAS, models.EMPTY_GOLD,
                               models.EMPTY_AGREEMENT]
    at.switch_page("views/whatif.py").run()
    assert not at.exception and at.title[0].value == "What-if"
    assert _texts(at.info) == [whatif.EMPTY_POLICY]


@flows
def test_overview_shows_the_figures_of_the_store(looped_engine, streamlit_caches) -> None:
    from ui.display import percent

    routes, audits = expected.latest_routes(looped_engine), expected.audits(looped_engine)
    routed = sum(sum(counts.values()) for counts in routes.values())
    automated = sum(expected.automated(counts) for counts in routes.values())
    recorded = expected.recorded_audit(looped_engine)  # the estimate the last cycle wrote when it finished
    assert set(recorded) == {a.segment for a in audits} == {"default"}  # the one segment that automates
    at = _run()
    shown = _metrics(at)
    assert {label: shown[label] for label in ("Items routed", "Automation rate", "Auto-accept error (audited)",
                                              "Open review tasks")} == {
        "Items routed": f"{routed:,}",
        "Automation rate": percent(automated / routed),
        "Auto-accept error (audited)": percent(expected.audit_estimate(looped_engine)),
        "Open review tasks": f"{sum(expected.open_tasks(looped_engine).values()):,}",
    }
    band = f"95 % interval {percent(recorded['default']['lower'])} – {percent(recorded['default']['upper'])}"
    assert any(band in caption.value for caption in at.caption)
    queue = at.table[0].value
    assert list(zip(queue["segment"], queue["queue"], queue["waiting"])) == expected.waiting(looped_engine)
    table = at.dataframe[-1].value.set_index("segment")
    assert list(table.index) == ["default", "finance"]
    for segment, counts in routes.items():
        assert table.loc[segment, "automation"] == percent(expected.automated(counts) / sum(counts.values()))
    assert table.loc["default", "audit error"] == percent(recorded["default"]["error_rate"])
    assert table.loc["default", "audit error 95 %"] == band.removeprefix("95 % interval ")
    assert table.loc["finance", "audit error"] == table.loc["finance", "audit error 95 %"] == "—"
    assert any(MORE_AUDITS_COMMENT in text for text in _texts(at.markdown))
    assert "Over cycles" in [h.value for h in at.subheader] and overview.EMPTY_TRENDS not in _texts(at.info)


@flows
def test_calibration_and_models_pages(looped_engine, streamlit_caches) -> None:
    promoted = expected.promoted(looped_engine)
    reports = expected.newest_reports(looped_engine, promoted)
    passed = [r for r in reports if r.passed]
    failed = [r for r in reports if not r.passed]
    assert [r.segment for r in passed] == ["default"] and [r.segment for r in failed] == ["finance"]
    at = _run()
    at.switch_page("views/calibration.py").run()
    assert not at.exception
    assert not at.info  # the promoted model has reports: no fallback to say
    assert [h.value for h in at.subheader] == [r.segment for r in reports]
    assert _texts(at.success) == ["Calibration gate passed"] * len(passed)
    assert _texts(at.error) == ["Calibration gate failed: " + ", ".join(f"`{code}`" for code in
                                                                        expected._json(r.reasons)) for r in failed]
    assert "`calibration_too_few_samples`" in at.error[0].value
    labelled = [metric.value for metric in at.metric if metric.label == "Labelled items"]
    assert labelled == [f"{r.n:,}" for r in reports]
    assert len(at.get("vega_lite_chart")) == len(reports)
    at.switch_page("views/models.py").run()
    assert not at.exception
    assert _metrics(at) == {"Promoted model": promoted}
    assert not expected.rows(looped_engine, "SELECT 1 FROM review_tasks WHERE selection_reason = 'gold'")
    assert not expected.rows(looped_engine, "SELECT item_id FROM annotations GROUP BY item_id "
                                            "HAVING count(DISTINCT annotator) > 1")
    # the loop's shown and blind answers fill the automation-bias table; no gold items, no overlap
    assert _texts(at.info) == [models.EMPTY_GOLD, models.EMPTY_AGREEMENT]
    versions = expected.rows(looped_engine, "SELECT version FROM model_versions ORDER BY created_at, version")
    assert at.dataframe[0].value["version"].tolist() == [v.version for v in versions]
    cycles = [cycle for cycle, _, _ in expected.cycle_reports(looped_engine)]
    assert at.dataframe[1].value["cycle"].tolist() == cycles
    assert len(at.get("vega_lite_chart")) == 2  # accuracy per model, figures per cycle
    at.switch_page("views/overview.py").run()
    assert not at.exception and at.title[0].value == "Overview"


@flows
def test_calibration_of_a_model_just_promoted_falls_back_and_says_so(looped_engine, looped_store,
                                                                     streamlit_caches) -> None:
    """People answer the open tasks and the retrain flow promotes a model on their labels: it has no report
    until the next calibrate run, so the page shows the newest reported model's and says which command fills it."""
    from flows.retrain import retrain_flow

    answer_open_tasks(looped_engine, looped_store, cycle=expected.cycle_reports(looped_engine)[-1][0])
    assert retrain_flow()["status"] == "promoted"
    promoted, shown = expected.promoted(looped_engine), expected.newest_reported_model(looped_engine)
    assert promoted != shown
    at = _run()
    at.switch_page("views/calibration.py").run()
    assert not at.exception
    assert _texts(at.info) == [calibration.NOT_YET.format(routing_now=promoted, shown=shown)]
    assert "`sluice cycle`" in at.info[0].value
    assert [h.value for h in at.subheader] == [r.segment for r in expected.newest_reports(looped_engine, shown)]


@flows
def test_whatif_says_which_commands_fill_what_it_lacks(routed_engine, streamlit_caches) -> None:
    """Cycle 1 routed but no cycle finished: no arrival rate yet. A segment the policy names but no item reached
    has no held-out labels either. (The page with figures: tests/ui/test_whatif.py.)"""
    from services.preview import NO_ARRIVALS

    assert not expected.rows(routed_engine, "SELECT 1 FROM cycle_reports WHERE finished_at IS NOT NULL")
    segments = {r.segment for r in expected.rows(routed_engine, "SELECT DISTINCT segment FROM items")}
    assert segments == {"default", "finance"}
    held_out = expected.rows(routed_engine, "SELECT count(*) FROM labels l JOIN items i ON i.id = l.item_id "
                                            "JOIN predictions p ON p.item_id = l.item_id "
                                            "WHERE l.split = 'holdout' AND i.segment = 'default'")
    assert held_out[0][0] > 0
    at = _run()
    at.switch_page("views/whatif.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.title[0].value == "What-if"
    assert at.selectbox[0].options == sorted(segments | {"news"})  # news: named by the policy only
    assert _texts(at.info) == [f"Nothing to preview yet: {NO_ARRIVALS}."] and not at.metric
    at.selectbox[0].set_value("news").run()
    assert not at.exception and len(at.info) == 1 and "`sluice seed-labels`" in at.info[0].value


@flows
def test_overview_flags_a_halted_segment_and_says_what_carries_a_guarantee(routed_engine, routed_store,
                                                                          streamlit_caches):
    """Cycle 1 auto-accepted under a fixed threshold and people answered its audits; then an operator sets a target
    no audit record can meet, and the next route run's live guard halts the segment. A retrain then promotes a
    new model: the halt becomes history, and the banner goes."""
    import streamlit as st

    from flows.retrain import retrain_flow
    from flows.route import route_flow
    from routing.policy import Policy
    from store.policies import save_policy
    from tests.ui.conftest import POLICY

    answer_open_tasks(routed_engine, routed_store, cycle=1)
    assert any(a.wrong for a in expected.audits(routed_engine)), "an audit found an auto-accepted item wrong"
    impossible = POLICY.replace("auto_accept_threshold: 0.8", "max_auto_error: 0.001\n  confidence: 0.9")
    save_policy(routed_engine, Policy.from_yaml(impossible), author="ops", comment="a target nothing meets")
    assert route_flow(cycle=2)["halted_segments"] == ["default"]
    promoted = expected.promoted(routed_engine)
    (halt,) = expected.rows(routed_engine, "SELECT * FROM guard_halts")
    assert halt.model_version == promoted  # the model routing now: the halt is in force
    at = _run()
    errors = _texts(at.error)
    assert len(errors) == 1 and errors[0].startswith("**default**: automation halted by the live guard")
    assert f"{halt.n_errors} of {halt.n_audited} audited" in errors[0] and "target 0.001" in errors[0]
    assert f"Model `{promoted}` no longer auto-accepts here" in errors[0]
    policy_lines = " ".join(m.value for m in at.markdown)
    assert "- defaults: target: error among auto-accepted items <= 0.001 with confidence 0.9" in policy_lines
    assert "- finance: people review every item" in policy_lines
    # the audited error is people's verdicts: the annotators' own error on gold items is said beside it
    assert any("annotators' own error" in c.value for c in at.caption)

    assert retrain_flow()["status"] == "promoted"  # the answered reviews trained a model that is not worse
    assert expected.promoted(routed_engine) != halt.model_version
    st.cache_data.clear()
    at = _run()
    assert not at.error  # the halt of a retired model is history only
    assert expected.rows(routed_engine, "SELECT count(*) FROM guard_halts")[0][0] == 1


def test_without_a_store_the_console_says_which_command_creates_one(sluice_home, streamlit_caches) -> None:
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    assert len(at.error) == 1 and "run `sluice init` (or `make demo`) first" in at.error[0].value
    assert not (sluice_home / "sluice.db").exists()  # reading never creates or migrates a store


@flows
def test_overview_shows_the_automation_bias_of_the_newest_model_annotators_saw(looped_engine, looped_store,
                                                                               streamlit_caches) -> None:
    from ui.display import percent

    answer_open_tasks(looped_engine, looped_store, cycle=expected.cycle_reports(looped_engine)[-1][0])
    answers = expected.rows(looped_engine, """
        SELECT t.model_version, t.blind, l.label = t.predicted_label AS agrees, m.created_at
        FROM review_tasks t JOIN labels l ON l.item_id = t.item_id JOIN model_versions m ON m.version = t.model_version
        WHERE l.source = 'annotation' AND t.predicted_label IS NOT NULL
          AND t.selection_reason NOT IN ('audit', 'escalation')""")
    both = {a.model_version for a in answers if a.blind} & {a.model_version for a in answers if not a.blind}
    newest = max(both, key=lambda version: next(a.created_at for a in answers if a.model_version == version))
    assert newest != max(both)  # the newest model's name does not sort last: names are content hashes

    def rate(blind: bool) -> float:
        chosen = [a.agrees for a in answers if a.model_version == newest and bool(a.blind) == blind]
        return sum(chosen) / len(chosen)

    at = _run()
    assert _metrics(at)["Automation-bias gap"] == percent(rate(False) - rate(True))
