"""Select flow: spend each segment's review budget on the most useful items, and queue every audit sample."""

from __future__ import annotations

import math
import uuid
from collections import Counter
from datetime import datetime
from typing import Any, NamedTuple

import numpy as np
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from sqlalchemy import Engine

from flows.common import (
    Payload,
    as_utc,
    derive_rng,
    engine_for,
    holds_store_lock,
    pack,
    settled,
    takes_payloads,
    utcnow,
)
from flows.runners import BATCH_RUNNER
from routing.decide import Route
from routing.draws import AUDIT_SALT, BLIND_SALT, OVERLAP_SALT, REVIEW_CAP_SALT, REVIEW_SALT, decision_uniform, drawn
from routing.kind_selection import CLASSIFICATION, KindBatch, select_by_kind, usefulness
from routing.policy import Policy, review_cost
from routing.probabilistic_review import draw_for_review, inclusion_probabilities
from routing.sampling import (
    STRATEGIES,
    Selection as Chosen,
    entropy,
    least_confidence,
    margin,
    probability_matrix,
    select_batch,
)
from scoring.preference import PairwiseExample, pair_description
from store.budget import spent_this_window
from store.db import refresh_statistics
from store.decisions import BacklogRow, review_backlog, review_backlog_sizes
from store.kinds import LlmCandidates, llm_candidates
from store.models import ItemState
from store.outbox import drawn_decisions, unsent_held_out_seeds, write_selection
from store.policies import active_policy
from store.settings import SluiceSettings, settings_or_environment
from store.vocab import Queue, Selection, TaskState

UNCERTAINTY = {"margin": margin, "entropy": entropy, "least_confidence": least_confidence}
# Draws every review item with a known probability that grows with its margin uncertainty (routing.probabilistic_review)
ACTIVE = "active"
SELECT_STRATEGIES = (*sorted(STRATEGIES), ACTIVE)
# The floor of the active draw takes at most this share of a segment's remaining budget
FLOOR_BUDGET_SHARE = 0.5
# The active draw's probabilities grow as usefulness ** REVIEW_POWER (above the floor): 1 is proportional
REVIEW_POWER = 1.0


def _task_row(
    row: BacklogRow, reason: str, probability: float, priority: float, cycle: int | None, now: datetime, *,
    blind: bool = False,
) -> dict[str, Any]:
    return {
        "item_id": row.item_id, "decision_id": row.decision_id, "selection_reason": reason,
        "selection_probability": float(probability), "priority": float(priority), "model_version": row.model_version,
        "policy_version": row.policy_version, "predicted_label": row.predicted_label, "score": row.raw_confidence,
        "blind": blind, "state": TaskState.PENDING,
        "attempts": 0, "cycle": cycle, "created_at": now, "overlap": 1, "queue": Queue.REVIEW,
    }


def blind_draw(decision_id: int, share: float) -> bool:
    """Whether a review task goes out without the model's suggestion: one fixed draw per routing decision."""
    return bool(drawn([decision_id], share, salt=BLIND_SALT)[0])


def assign_overlap(tasks: list[dict[str, Any]], share: float, annotators: int) -> None:
    """Give an `overlap_share` of the tasks (a fixed draw per routing decision) `annotators` annotators each."""
    candidates = [t for t in tasks if t["decision_id"] is not None]
    for task_row, overlapped in zip(candidates, drawn([t["decision_id"] for t in candidates], share,
                                                      salt=OVERLAP_SALT)):
        if overlapped:
            task_row["overlap"] = annotators


def audit_rates(rows: list[BacklogRow], default: float) -> np.ndarray:
    """Each backlog row's audit share: the one its route run applied (sized or the policy's), else `default`."""
    return np.array([default if r.audit_rate is None else r.audit_rate for r in rows], dtype=float)


def audit_draw(rows: list[BacklogRow], *, rate: float | np.ndarray) -> tuple[list[BacklogRow], list[BacklogRow]]:
    """(drawn for audit, the rest): each decision independently with probability `rate` (one, or one per row)."""
    mask = drawn([r.decision_id for r in rows], rate, salt=AUDIT_SALT)
    return [r for r, d in zip(rows, mask) if d], [r for r, d in zip(rows, mask) if not d]


def _plain_text(value: str | list[Any] | None) -> str:
    """A prompt (a string or chat messages) or context (a string or documents) as one text."""
    if value is None or isinstance(value, str):
        return value or ""
    return "\n\n".join(part["content"] if isinstance(part, dict) else str(part) for part in value)


def pair_features(payloads: list[dict[str, Any]]) -> np.ndarray:
    """An order-free description of each pair from its texts (``scoring.preference.pair_description``), each
    column standardised over the pairs, so that no one feature's scale decides the diversity clusters."""
    description = pair_description([PairwiseExample(_plain_text(p["prompt"]), p["response_a"], p["response_b"],
                                                    _plain_text(p.get("context"))) for p in payloads])
    return (description - description.mean(axis=0)) / (description.std(axis=0) + 1e-9)


def class_probabilities(rows: list[BacklogRow]) -> np.ndarray:
    """The (n, k) class probabilities of classification rows: their own, or rebuilt from prediction and confidence
    (``routing.sampling.probability_matrix``)."""
    return probability_matrix([r.probs for r in rows], [r.predicted_label for r in rows],
                              [r.raw_confidence for r in rows])


def kind_batch(reviews: list[BacklogRow], llm: LlmCandidates) -> KindBatch | None:
    """What the kind selectors read of `reviews`, or None when none of them is an output of an LLM pipeline.

    A response's and a pair's outcome probability is the decision's calibrated confidence (P(people accept), P(people
    prefer the predicted side)): the pipeline's raw score may be one-sided or skewed, and closeness of a raw 0.9 to
    0.5 says nothing when people accept half of the 0.9s. Where no calibration applied the route flow stored the raw
    score as the calibrated one. An extraction's fields are taken at the confidences its payload gives them."""
    at = llm.positions([r.decision_id for r in reviews])
    if all(p is None for p in at):
        return None
    kinds = tuple(CLASSIFICATION if p is None else llm.kinds[p] for p in at)
    plain = [r for r, p in zip(reviews, at) if p is None]
    class_probs = class_probabilities(plain) if plain else np.empty((0, 2))
    p_outcome = np.array([np.nan if p is None or kind == "extraction" or llm.calibrated_confidences[p] is None
                          else llm.calibrated_confidences[p] for p, kind in zip(at, kinds)], dtype=float)
    pairs = [llm.payloads[p] or {} for p, kind in zip(at, kinds) if kind == "pairwise" and p is not None]
    fields = [(row, field["confidence"]) for row, (p, kind) in enumerate(zip(at, kinds))
              if kind == "extraction" and p is not None
              for field in ((llm.payloads[p] or {}).get("fields") or {}).values()]
    return KindBatch(kinds=kinds, class_probs=class_probs, p_outcome=p_outcome,
                     pair_features=pair_features(pairs) if pairs else np.empty((0, 1)),
                     field_confidence=np.array([c for _, c in fields], dtype=float),
                     field_owner=np.array([row for row, _ in fields], dtype=np.intp))


def choose_reviews(reviews: list[BacklogRow], llm: LlmCandidates, *, strategy: str, budget: int,
                   rng: np.random.Generator) -> tuple[Chosen, np.ndarray]:
    """(the review items to send, most useful first; every candidate's usefulness, its task priority). A batch of
    classifications alone is chosen as it always was, by `strategy` over class probabilities; one holding outputs of
    LLM pipelines shares the budget out by usefulness and lets each kind spend its share by its own uncertainty
    (``routing.kind_selection.select_by_kind``)."""
    batch = kind_batch(reviews, llm)
    if batch is None:
        probs = class_probabilities(reviews)
        return (select_batch(probs, budget=budget, strategy=strategy, rng=rng),
                UNCERTAINTY.get(strategy, margin)(probs))
    return select_by_kind(batch, budget=budget, strategy=strategy, rng=rng), usefulness(batch, strategy=strategy)


def review_usefulness(reviews: list[BacklogRow], llm: LlmCandidates, *, strategy: str = "margin") -> np.ndarray:
    """Each review candidate's usefulness in [0, 1]: `strategy`'s uncertainty over its class probabilities, or its
    kind's (``routing.kind_selection.usefulness``) for an output of an LLM pipeline."""
    batch = kind_batch(reviews, llm)
    if batch is None:
        probs = class_probabilities(reviews)
        return UNCERTAINTY.get(strategy, margin)(probs)
    return usefulness(batch, strategy=strategy)


# Strategies that rank every candidate once and take a prefix: a larger budget takes more of the same ranking
NESTED_STRATEGIES = frozenset({"margin", "entropy", "least_confidence"})


def _choose_around_audits(reviews: list[BacklogRow], llm: LlmCandidates, strategy: str, budget: int,
                          audited: set[int], cycle: int | None) -> tuple[Chosen, np.ndarray]:
    """`choose_reviews` over every review item, audited or not. A pick the audit took goes out as its audit, so
    a ranking strategy takes one more of its ranking for each such pick until `budget` reviews are left: whether
    it goes on looks only at the audit draw of items it has already taken, so what it leaves waiting is still
    fixed before the audit draw of those items (``routing.backlog``). Other strategies pick once."""
    rng = derive_rng("select", strategy, cycle, [r.item_id for r in reviews])
    if not (strategy in NESTED_STRATEGIES and kind_batch(reviews, llm) is None):
        return choose_reviews(reviews, llm, strategy=strategy, budget=budget, rng=rng)
    # the whole ranking once: a budget of `take` chooses its first `take` items (the same tie-breaking draw)
    ranking, useful = choose_reviews(reviews, llm, strategy=strategy, budget=len(reviews), rng=rng)
    taken = np.fromiter((reviews[i].decision_id in audited for i in ranking.indices), dtype=bool,
                        count=len(ranking))
    take = min(budget, len(reviews))
    while True:
        wanted = min(budget + int(taken[:take].sum()), len(reviews))
        if take >= wanted:
            return Chosen(ranking.indices[:take], ranking.reasons[:take], ranking.probabilities[:take]), useful
        take = wanted


def active_budget(review_labels: float, rates: np.ndarray) -> int:
    """How many reviews the active draw expects to draw so that those it sends meet `review_labels`: a drawn item
    the audit took goes out as its audit, so the draw is sized up by the audit share (a figure of the design, not
    of the audit draw's outcome, so what it leaves waiting still does not depend on it)."""
    share = float(np.mean(rates)) if len(rates) else 0.0
    return int(review_labels / (1.0 - share)) if share < 1.0 else 0


def review_cap(budget: int) -> int:
    """The most reviews one active draw sends: its expected count (the budget) plus four standard deviations of a
    Poisson count of that mean, so the cap binds rarely (``routing.probabilistic_review.overflow_bound``)."""
    return budget + math.ceil(4 * math.sqrt(budget))


def draw_reviews(reviews: list[BacklogRow], llm: LlmCandidates, *, budget: int, floor: float, cycle: int | None,
                 now: datetime) -> tuple[list[tuple[BacklogRow, float, float]], list[dict[str, Any]]]:
    """The active strategy: every review candidate is drawn independently with a known probability that grows with
    its usefulness, sized so that the expected number drawn is `budget` (``routing.probabilistic_review``).

    The policy's `min_review_probability` is the floor that lets every candidate be drawn, but the floor takes at
    most FLOOR_BUDGET_SHARE of the budget (with a backlog far larger than the budget, a fixed floor would spend it
    all uniformly): the floor applied is stored with each draw. A drawn candidate beyond ``review_cap(budget)`` is
    recorded as drawn but not sent (a missing label to the estimators). The draw of a decision is a fixed number
    per decision, so a retried select draws the same. Returns (drawn and sent: row, probability, usefulness, most
    useful first) and the draw rows of every candidate."""
    if not reviews or budget <= 0:
        return [], []
    useful = review_usefulness(reviews, llm)
    floor = min(floor, FLOOR_BUDGET_SHARE * budget / len(reviews))
    probability = inclusion_probabilities(useful, budget=budget, floor=floor, power=REVIEW_POWER)
    ids = [r.decision_id for r in reviews]
    draw = draw_for_review(probability, cap=review_cap(budget), uniforms=decision_uniform(ids, salt=REVIEW_SALT),
                           cap_order=decision_uniform(ids, salt=REVIEW_CAP_SALT))
    rows = [{"decision_id": r.decision_id, "item_id": r.item_id, "probability": float(p), "drawn": bool(d),
             "labelled": bool(sent), "cycle": cycle, "created_at": now}
            for r, p, d, sent in zip(reviews, probability, draw.drawn, draw.labelled)]
    sent = sorted(np.flatnonzero(draw.labelled), key=lambda i: -useful[i])
    return [(reviews[i], float(probability[i]), float(useful[i])) for i in sent], rows


class Selected(NamedTuple):
    """What select plans for one segment: the task rows (gold included), the active draw's rows, and the review
    items its strategy left waiting, with their audit draw (the backlog population of this run,
    ``routing.backlog``)."""

    tasks: list[dict[str, Any]]
    draws: list[dict[str, Any]]
    population: list[dict[str, Any]]


def select_segment(
    engine: Engine, rows: list[BacklogRow], budget: int, audit_rate: float, strategy: str, cycle: int | None,
    blind_share: float = 0.0, gold_share: float = 0.0, overlap_share: float = 0.0, overlap_annotators: int = 3,
    *, spent: int = 0, now: datetime | None = None, llm: LlmCandidates | None = None,
    min_review_probability: float = 0.01, drawn_already: set[int] | None = None, run: str | None = None,
) -> Selected:
    """Queue all audit samples, then escalations, then the most useful review items, within `budget` labels.

    Routing draws the spot-check share of auto-accepted items; the same share of review items is drawn here
    for audit too, so that audited items are a uniform random sample of everything routed: the only labels
    that may calibrate a model and certify its thresholds. Audits go out blind: a suggestion shown to the auditor
    would bias the error estimate towards the model. A `blind_share` of the budgeted review tasks goes out blind
    too, so that the console can compare how often annotators accept a shown suggestion with how often they agree
    with it unseen (the automation-bias gap). An `overlap_share` of all but gold tasks goes to `overlap_annotators`
    annotators each, to measure agreement. `llm` holds what the outputs of LLM pipelines among the rows carry
    (their review is chosen by their kind's uncertainty, see `choose_reviews`).

    One budget: `budget` is every label the segment asks people for in its window, and `spent` what the window's
    tasks already ask for (``store.budget.spent_this_window``). Audits come first (the route flow sized them to what
    was left of the window), then escalations, then reviews with their gold and overlap: a review costs its
    overlap, and each brings `gold_share` gold tasks. What the audits and escalations leave is split so the
    whole stays within the budget; an escalation that does not fit waits in the backlog for the next window.

    With the `active` strategy the review items are drawn with known probabilities instead (`draw_reviews`, floor
    `min_review_probability`), the expected labels meeting what is left; decisions in `drawn_already` were drawn by
    an earlier select and are not drawn again.

    The strategy chooses from every review item, the audited ones too (a pick the audit took goes out as its
    audit), so the items it leaves waiting are fixed before the audit draw. With a select `run` id they are
    returned with their audit rate and whether the audit took them: a population whose audits certify what is
    left of it under a later model (``routing.backlog``). Returns the task rows to write (gold included), the draw
    rows (active strategy only) and those population rows."""
    now = now or utcnow()
    llm = llm or LlmCandidates([], [], [], [])
    draws: list[dict[str, Any]] = []
    left = max(budget - spent, 0)
    tasks = [_task_row(r, Selection.AUDIT, r.inclusion_probability if r.inclusion_probability is not None else 1.0,
                       0.0, cycle, now, blind=True)
             for r in rows if r.route == Route.SPOT_CHECK]
    reviews = [r for r in rows if r.route == Route.REVIEW]
    rates = audit_rates(reviews, audit_rate)
    audited, _ = audit_draw(reviews, rate=rates)
    audited_ids = {r.decision_id for r in audited}
    tasks += [_task_row(r, Selection.AUDIT, rate, 0.0, cycle, now, blind=True)
              for r, rate in zip(audited, audit_rates(audited, audit_rate).tolist())]
    assign_overlap(tasks, overlap_share, overlap_annotators)
    left -= labels_asked(tasks)
    for row in (r for r in rows if r.route == Route.ESCALATE):
        escalation = _task_row(row, Selection.ESCALATION, 1.0, 2.0, cycle, now)
        assign_overlap([escalation], overlap_share, overlap_annotators)
        if escalation["overlap"] > left:
            break
        tasks.append(escalation)
        left -= escalation["overlap"]
    review_labels = max(left, 0) / review_cost(gold_share, overlap_share, overlap_annotators)
    chosen_tasks: list[dict[str, Any]] = []
    # The strategy chooses from every review item, audited or not, so that what it leaves waiting does not depend
    # on the audit draw (``routing.backlog``); a pick the audit took goes out as its audit.
    picked = set(drawn_already or set()) & {r.decision_id for r in reviews}
    if strategy == ACTIVE:
        fresh = [r for r in reviews if r.decision_id not in picked]  # a decision is drawn once
        picks, draws = draw_reviews(fresh, llm, budget=active_budget(review_labels, audit_rates(fresh, audit_rate)),
                                    floor=min_review_probability, cycle=cycle, now=now)
        picked |= {d["decision_id"] for d in draws if d["drawn"]}
        chosen_tasks = [_task_row(row, Selection.ACTIVE, probability, useful, cycle, now,
                                  blind=blind_draw(row.decision_id, blind_share))
                        for row, probability, useful in picks if row.decision_id not in audited_ids]
        assign_overlap(chosen_tasks, overlap_share, overlap_annotators)
    elif reviews and int(review_labels):
        chosen, useful = _choose_around_audits(reviews, llm, strategy, math.ceil(review_labels), audited_ids, cycle)
        picked |= {reviews[index].decision_id for index in chosen.indices}
        chosen_tasks = [_task_row(reviews[index], reason, probability, float(useful[index]), cycle, now,
                                  blind=blind_draw(reviews[index].decision_id, blind_share))
                        for index, reason, probability in zip(chosen.indices, chosen.reasons, chosen.probabilities)
                        if reviews[index].decision_id not in audited_ids]
        assign_overlap(chosen_tasks, overlap_share, overlap_annotators)
        # the least useful go first until the reviews, their overlap and their gold fit what is left
        while chosen_tasks and labels_asked(chosen_tasks) + round(gold_share * len(chosen_tasks)) > left:
            chosen_tasks.pop()
    tasks += chosen_tasks
    tasks += gold_tasks(engine, rows[0].segment, round(gold_share * len(chosen_tasks)), rows[0].policy_version,
                        cycle, now)
    # A run of re-routed items only is a pure backlog: its audits are held out whatever the policy's training
    # share, so that all of them can certify it (labeling.resolve.label_split)
    pure_backlog = all(r.rerouted for r in reviews)
    population = [{"decision_id": r.decision_id, "item_id": r.item_id, "segment": r.segment, "run": run,
                   "audit_probability": float(rate), "audited": r.decision_id in audited_ids,
                   "audit_held_out": pure_backlog, "cycle": cycle, "created_at": now}
                  for r, rate in zip(reviews, rates.tolist()) if r.decision_id not in picked] if run else []
    return Selected(tasks, draws, population)


def labels_asked(tasks: list[dict[str, Any]]) -> int:
    """The labels `tasks` ask people for: each task's overlap (how many annotators answer it)."""
    return sum(int(t["overlap"]) for t in tasks)


# Segments per select task: a segment is a user's grouping, so their number must not multiply Prefect tasks.
SELECT_BATCH_ITEMS, SELECT_BATCH_SEGMENTS = 20_000, 1_000


@task(name="select-segments", cache_policy=NO_CACHE)
@takes_payloads
def select_segments(names: list[str], strategy: str, cycle: int | None, settings: SluiceSettings, now: datetime,
                    run: str | None, policy: Policy) -> tuple[Counter[str], int]:
    """Read the review backlog of a batch of segments, plan their review tasks (each segment under its own rules
    of `policy`, the one the flow read, and its budget window) and write them at once, with the review items each
    segment's strategy left waiting (the backlog population of select `run`); the tasks by selection reason, and
    how many backlog items the batch read."""
    engine = engine_for(settings)
    by_segment: dict[str, list[BacklogRow]] = {}
    for row in review_backlog(engine, names):
        by_segment.setdefault(row.segment, []).append(row)
    segments = [by_segment[segment] for segment in sorted(by_segment)]
    if not segments:
        return Counter(), 0
    tasks: list[dict[str, Any]] = []
    spent = {segment: sum(by_reason.values()) for segment, by_reason in
             spent_this_window(engine, policy, [rows[0].segment for rows in segments], now).items()}
    review_ids = [r.decision_id for rows in segments for r in rows if r.route == Route.REVIEW]
    llm = llm_candidates(engine, review_ids)
    drawn_already: set[int] = set()
    if strategy == ACTIVE:
        drawn_already = drawn_decisions(engine, review_ids)
    draws: list[dict[str, Any]] = []
    population: list[dict[str, Any]] = []
    for rows in segments:
        rules = policy.for_segment(rows[0].segment)
        planned = select_segment(
            engine, rows, rules.review_budget, rules.spot_check_rate, strategy, cycle, rules.blind_share,
            rules.gold_share, rules.overlap_share, rules.overlap_annotators, spent=spent.get(rows[0].segment, 0),
            now=now, llm=llm, min_review_probability=rules.min_review_probability, drawn_already=drawn_already,
            run=run)
        tasks += planned.tasks
        draws += planned.draws
        population += planned.population
    queued = {t["item_id"]: ItemState.queued.value for t in tasks if t["selection_reason"] != Selection.GOLD}
    write_selection(engine, draws=draws, population=population, tasks=tasks, queued=queued)
    return Counter(t["selection_reason"] for t in tasks), sum(len(rows) for rows in segments)


def gold_tasks(engine: Engine, segment: str, count: int, policy_version: str, cycle: int | None,
               now: datetime) -> list[dict]:
    """`count` held-out seed items of the segment, never sent before, to go out blind as gold: their known
    answers measure each annotator's accuracy. They keep their state and their label."""
    if count <= 0:
        return []
    candidates = unsent_held_out_seeds(engine, segment)
    if not candidates:
        return []
    picks = derive_rng("gold", segment, cycle, len(candidates)).choice(len(candidates),
                                                                        size=min(count, len(candidates)),
                                                                        replace=False)
    return [{"item_id": candidates[i], "decision_id": None, "selection_reason": Selection.GOLD,
             "selection_probability": 1.0, "priority": 1.0, "model_version": None, "policy_version": policy_version,
             "predicted_label": None, "score": None, "blind": True, "state": TaskState.PENDING, "attempts": 0,
             "cycle": cycle, "created_at": now, "overlap": 1, "queue": Queue.REVIEW} for i in sorted(picks)]


@flow(name="select", log_prints=True, task_runner=BATCH_RUNNER)
@holds_store_lock
def select_flow(
    strategy: str = "margin", cycle: int | None = None, settings: SluiceSettings | None = None,
    as_of: datetime | None = None,
) -> dict[str, Any]:
    """Write the outbox of review tasks (pushed to Label Studio by the push flow). Each segment spends at most its
    `review_budget` per budget window, counted over every select in that window with or without a cycle. `as_of`
    (default: now) is the moment the tasks are dated and the window taken from; simulations pass their clock."""
    if strategy not in SELECT_STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; expected one of {list(SELECT_STRATEGIES)}")
    logger = get_run_logger()
    settings = settings_or_environment(settings)
    engine = engine_for(settings)
    now = as_utc(as_of) or utcnow()
    policy, _ = active_policy(engine)  # read once: every batch selects under this version
    # counted here, read by each batch: the flow holds no backlog row
    batches = pack(review_backlog_sizes(engine), max_items=SELECT_BATCH_ITEMS, max_groups=SELECT_BATCH_SEGMENTS)
    counts: Counter[str] = Counter()
    read = 0
    with settled() as futures:
        run = uuid.uuid4().hex  # what each segment's strategy leaves waiting is one population (routing.backlog)
        futures += [select_segments.submit(Payload([group.segment for group in batch]), strategy, cycle, settings,
                                           now, run, Payload(policy)) for batch in batches]
        for future in futures:
            tasks, rows = future.result()
            counts.update(tasks)
            read += rows
    summary = {"queued": sum(counts.values()), **counts, "backlog": read - sum(counts.values())}
    if summary["queued"]:
        refresh_statistics(engine, "item_states", "review_tasks")
    logger.info("select: %s", summary)
    return summary
