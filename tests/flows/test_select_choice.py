"""flows.select's choice of review items over plain rows (no store): what the kind selectors read of a backlog,
and a backlog of classifications chosen exactly as before."""

from __future__ import annotations

import numpy as np
import pytest

from flows.select import choose_reviews, kind_batch, pair_features
from routing.sampling import probability_matrix, select_batch
from store.kinds import LlmCandidates
from store.decisions import BacklogRow

NONE = LlmCandidates([], [], [], [])


def row(decision_id: int, label: str | None, raw: float | None, probs: dict | None = None) -> BacklogRow:
    return BacklogRow(decision_id, f"item-{decision_id}", "s", "review", None, "m", "p1", label, raw, probs, None)


def test_a_backlog_of_classifications_is_chosen_as_select_batch_chooses_it():
    rng = np.random.default_rng(0)
    rows = [row(k, "x", None, dict(zip("xyz", rng.dirichlet(np.ones(3))))) for k in range(50)]
    probs = probability_matrix([r.probs for r in rows], [r.predicted_label for r in rows], [None] * 50)
    for strategy in ("margin", "entropy", "least_confidence", "random", "diverse"):
        chosen, _ = choose_reviews(rows, NONE, strategy=strategy, budget=8, rng=np.random.default_rng(4))
        expected = select_batch(probs, budget=8, strategy=strategy, rng=np.random.default_rng(4))
        assert chosen.indices.tolist() == expected.indices.tolist() and chosen.reasons == expected.reasons


def test_kind_batch_reads_calibrated_confidence_fields_and_pair_texts():
    rows = [row(1, "x", 0.7, {"x": 0.7, "y": 0.3}), row(2, "accept", 0.9), row(3, "a", 0.8, {"a": 0.8, "b": 0.2}),
            row(4, "confirmed", 0.4), row(5, "b", 0.6, {"a": 0.4, "b": 0.6})]
    pair = {"prompt": [{"role": "user", "content": "Which is right?"}], "response_a": "Two years.",
            "response_b": "Five years, according to nothing at all.", "context": ["Warranty: two years."]}
    llm = LlmCandidates([2, 3, 4, 5], ["generation", "pairwise", "extraction", "pairwise"],
                        [{"response": "r", "confidence": 0.9}, pair,
                         {"fields": {"a": {"value": 1, "confidence": 0.9}, "b": {"value": 2, "confidence": 0.6}}},
                         {**pair, "response_a": "Ten years."}],
                        [0.52, 0.7, 0.4, 0.55])
    batch = kind_batch(rows, llm)
    assert batch is not None
    assert batch.kinds == ("classification", "generation", "pairwise", "extraction", "pairwise")
    np.testing.assert_allclose(batch.class_probs, [[0.7, 0.3]])
    # the decision's calibrated confidence, not the raw 0.9 of the generation row
    np.testing.assert_allclose(batch.p_outcome, [np.nan, 0.52, 0.7, np.nan, 0.55])
    np.testing.assert_allclose(batch.field_confidence, [0.9, 0.6])
    assert batch.field_owner.tolist() == [3, 3] and batch.pair_features.shape[0] == 2
    np.testing.assert_allclose(batch.pair_features, pair_features([pair, {**pair, "response_a": "Ten years."}]))
    assert kind_batch(rows[:1], llm) is None


def test_pair_features_do_not_depend_on_which_response_is_a():
    pairs = [{"prompt": "Q?", "response_a": "Short.", "response_b": "A much longer answer with 3 numbers 4 5."},
             {"prompt": "Q2?", "response_a": "Yes.", "response_b": "No, see the manual.", "context": "Manual: no."}]
    swapped = [{**p, "response_a": p["response_b"], "response_b": p["response_a"]} for p in pairs]
    np.testing.assert_allclose(pair_features(pairs), pair_features(swapped))


def test_the_active_draw_has_known_probabilities_sized_to_the_budget_with_a_floor_and_is_fixed_per_decision():
    from datetime import datetime, timezone

    from flows.select import FLOOR_BUDGET_SHARE, draw_reviews, review_cap, review_usefulness

    now = datetime(2026, 12, 5, tzinfo=timezone.utc)
    rng = np.random.default_rng(1)
    rows = [row(k, "x", None, dict(zip("xy", (p, 1 - p)))) for k, p in enumerate(rng.uniform(0.5, 1.0, 400))]
    picks, draws = draw_reviews(rows, NONE, budget=40, floor=0.01, cycle=3, now=now)
    probability = np.array([d["probability"] for d in draws])
    useful = review_usefulness(rows, NONE)
    assert len(draws) == 400 and abs(probability.sum() - 40) < 1e-6 and probability.min() >= 0.01 - 1e-12
    assert np.corrcoef(probability, useful)[0, 1] > 0.9  # the more uncertain, the likelier drawn
    sent = [d for d in draws if d["labelled"]]
    assert [p[0].decision_id for p in picks] == sorted((d["decision_id"] for d in sent),
                                                       key=lambda k: -useful[k])  # most useful first
    assert len(sent) <= review_cap(40) and all(d["drawn"] for d in sent) and {d["cycle"] for d in draws} == {3}
    assert {p[0].decision_id: p[1] for p in picks} == {d["decision_id"]: d["probability"] for d in sent}
    again, _ = draw_reviews(list(reversed(rows)), NONE, budget=40, floor=0.01, cycle=3, now=now)
    assert sorted(p[0].decision_id for p in again) == sorted(p[0].decision_id for p in picks)  # fixed per decision
    # over many decisions the share drawn matches the stated probabilities (a calibration check of the draw)
    many = [row(k, "x", None, {"x": 0.8, "y": 0.2}) for k in range(20_000)]
    _, flat = draw_reviews(many, NONE, budget=2_000, floor=0.0, cycle=None, now=now)
    assert abs(np.mean([d["drawn"] for d in flat]) - 0.1) < 0.006
    # a backlog far beyond the budget: the floor gives way so it takes at most its share of the budget
    _, crowded = draw_reviews(rows, NONE, budget=2, floor=0.05, cycle=None, now=now)
    floor_seen = min(d["probability"] for d in crowded)
    assert floor_seen == FLOOR_BUDGET_SHARE * 2 / 400 and abs(sum(d["probability"] for d in crowded) - 2) < 1e-6
    assert draw_reviews(rows, NONE, budget=0, floor=0.01, cycle=None, now=now) == ([], [])


def _routed(decision_id: int, route: str, p: float = 0.7) -> BacklogRow:
    return BacklogRow(decision_id, f"item-{decision_id}", "s", route, 0.05 if route == "spot_check" else None, "m",
                      "p1", "x", p, {"x": p, "y": 1 - p}, 0.05)


@pytest.mark.parametrize("strategy", ["margin", "random", "active"])
def test_one_budget_covers_audits_escalations_reviews_gold_and_overlap(strategy):
    """Every label the select asks for counts against the segment's budget: audits first, then escalations, then
    reviews with their overlap and gold (`active` meets it in expectation: its draw count is random)."""
    from flows.select import labels_asked, select_segment

    rng = np.random.default_rng(2)
    rows = ([_routed(k, "spot_check") for k in range(12)] + [_routed(100 + k, "escalate") for k in range(6)]
            + [_routed(200 + k, "review", p) for k, p in enumerate(rng.uniform(0.5, 1.0, 200))])
    tasks, _, _ = select_segment(None, rows, 60, 0.05, strategy, 1, overlap_share=0.3, overlap_annotators=3,
                              spent=4)
    reasons = [t["selection_reason"] for t in tasks]
    audits = [t for t in tasks if t["selection_reason"] == "audit"]
    assert reasons[:len(audits)] == ["audit"] * len(audits) and len(audits) >= 12  # audits first, all of them
    assert reasons.count("escalation") == 6
    total = labels_asked(tasks)
    if strategy == "active":
        assert total <= 56 + 4 * 60 ** 0.5 * 3  # the expected count meets the budget; the hard cap bounds it
    else:
        assert total <= 56 and total >= 56 - 3  # within what the window had left, and spending it
    crowded, _, _ = select_segment(None, rows[:18], 10, 0.05, strategy, 1, spent=0)
    assert [t["selection_reason"] for t in crowded].count("escalation") < 6  # what does not fit waits


def test_margin_picks_from_every_review_item_and_takes_the_next_of_its_ranking_for_each_pick_the_audit_took():
    """What select leaves waiting is a prefix's complement of the ranking: it depends on the audit draw only of
    the items it took (routing.backlog), and the budget is still spent on reviews."""
    from flows.select import select_segment

    rng = np.random.default_rng(5)
    rows = [_routed(k, "review", p) for k, p in enumerate(rng.uniform(0.4, 1.0, 300))]
    tasks, _, population = select_segment(None, rows, 40, 0.2, "margin", 1, run="r1")
    audits = {t["decision_id"] for t in tasks if t["selection_reason"] == "audit"}
    reviews = [t["decision_id"] for t in tasks if t["selection_reason"] == "margin"]
    assert len(reviews) + len(audits) == 40 and not set(reviews) & audits  # the budget is spent
    waiting = {p["decision_id"] for p in population}
    assert waiting.isdisjoint(reviews)  # the population is what margin left, audited or not
    assert {p["decision_id"] for p in population if p["audited"]} == audits - (
        {r.decision_id for r in rows} - waiting)  # every audit outside the picks is in the population
    from flows.common import derive_rng

    ranking = choose_reviews(rows, NONE, strategy="margin", budget=len(rows),
                             rng=derive_rng("select", "margin", 1, [r.item_id for r in rows]))[0].indices.tolist()
    taken = [rows[i].decision_id for i in ranking[:len(rows) - len(waiting)]]
    assert set(taken) == {r.decision_id for r in rows} - waiting  # a prefix of margin's ranking
