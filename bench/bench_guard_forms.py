"""Which live guard: today's test on the audited items alone, or the weighted test over every auto-accepted item?

The live guard (`routing/guard.py`) tests the audits of auto-accepted items as if each were a uniform draw of the
automated items of its moment. That holds while every automated item of a route batch is drawn at one rate (the
batch's audit rate). `routing/active_inference.weighted_error_guard` tests the inverse-probability-weighted terms
of every automated item instead (Horvitz-Thompson, or doubly robust with the calibrated confidence as predictor),
which stays valid when the inclusion probabilities vary from item to item, at a cost in power: its bet must be
fixed before each label, so the range of the terms (up to 1 / the smallest probability) limits it.

This simulates streams of auto-accepted items with a known error rate and known inclusion probabilities, and
runs the three forms on each:

* `uniform`: every item drawn at 0.05 (today's design within a batch);
* `tilted`: one item in five is "hard", drawn at 0.2, the rest at 0.02 (the floor), and 80% of the errors fall
  on the hard items (inclusion grows with uncertainty, as in the `active` draw);
* `against`: the same probabilities, but 2% of the errors fall on the hard items (a blind spot: the easy items
  the floor rarely draws are where the model is wrong).

For each true error rate it prints the share of streams the guard halted (at a rate below the target, a false
halt: at most delta is allowed) and the median number of automated items before the halt.

    .venv/bin/python bench/bench_guard_forms.py [--streams 200] [--items 20000] [--alpha 0.05] [--delta 0.1]

Runs in about 20 seconds on the 2-core machine.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from routing.active_inference import weighted_error_guard  # noqa: E402
from routing.guard import live_error_guard  # noqa: E402

SCENARIOS = ("uniform", "tilted", "against")
FORMS = ("audited only", "weighted", "doubly robust")
HARD_SHARE, HARD_RATE, FLOOR, UNIFORM_RATE = 0.2, 0.2, 0.02, 0.05
ERRORS_ON_HARD = {"tilted": 0.8, "against": 0.02}  # the share of all errors that falls on the hard items


def stream(scenario: str, error: float, n: int, rng: np.random.Generator):
    """Inclusion probabilities, per-item error chances, the draw and the errors of one stream."""
    if scenario == "uniform":
        probability, chance = np.full(n, UNIFORM_RATE), np.full(n, error)
    else:
        hard = rng.random(n) < HARD_SHARE
        on_hard = ERRORS_ON_HARD[scenario]
        probability = np.where(hard, HARD_RATE, FLOOR)
        chance = np.where(hard, error * on_hard / HARD_SHARE, error * (1.0 - on_hard) / (1.0 - HARD_SHARE))
    wrong = rng.random(n) < chance
    drawn = rng.random(n) < probability
    return probability, 1.0 - chance, drawn, wrong


def halt_at(form: str, probability, predicted_correct, drawn, wrong, alpha: float, delta: float) -> float:
    """The number of automated items seen when the guard halted (inf when it never did)."""
    if form == "audited only":
        result = live_error_guard(wrong[drawn], alpha=alpha, delta=delta)
        return float(np.flatnonzero(drawn)[result.halted_at] + 1) if result.halted_at is not None else np.inf
    estimator = "weighted" if form == "weighted" else "doubly_robust"
    guard = weighted_error_guard(predicted_correct, probability, drawn, wrong, alpha=alpha, delta=delta,
                                 floor=float(probability.min()), estimator=estimator)
    return float(guard.halted_at + 1) if guard.halted_at is not None else np.inf


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--delta", type=float, default=0.1)
    args = parser.parse_args(argv)
    rates = (0.6 * args.alpha, 1.5 * args.alpha, 3.0 * args.alpha)
    print(f"{args.streams} streams of {args.items} automated items; target {args.alpha}, delta {args.delta}")
    print("| scenario | true error | " + " | ".join(f"{f}: halted, median items" for f in FORMS) + " |")
    print("|---|---|" + "---|" * len(FORMS))
    with np.errstate(over="ignore"):
        for scenario in SCENARIOS:
            for error in rates:
                halts: dict[str, list[float]] = {f: [] for f in FORMS}
                for seed in range(args.streams):
                    design = stream(scenario, error, args.items, np.random.default_rng(seed))
                    for form in FORMS:
                        halts[form].append(halt_at(form, *design, args.alpha, args.delta))
                cells = []
                for form in FORMS:
                    at = np.asarray(halts[form])
                    share = float(np.isfinite(at).mean())
                    median = float(np.median(at))
                    cells.append(f"{share:.2f}, " + ("never" if not np.isfinite(median) else f"{median:,.0f}"))
                print(f"| {scenario} | {error:.3f} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
