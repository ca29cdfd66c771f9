"""Could the `active` draw's review labels help certify an auto-accept threshold? A simulation, before any flow.

The threshold a route applies is certified today on uniform labels alone (held-out seed, audit and gold labels):
fixed-sequence Learn-then-Test over exact binomial p-values (`routing.thresholds`). Review labels drawn with known
probabilities (`routing.probabilistic_review`) are a tilted sample, and the labels that trained a model may never
certify it, so in a loop that retrains every cycle they certify nothing. This measures what they would buy if a
fixed share of them were held out of training, by the one combination that keeps the exact test:

    p(t) = min(1, p_H(t) / E_D(t))

- `p_H(t)` is the exact binomial p-value of "error rate >= alpha among items at or above t" on the uniform
  labels `H`.
- `E_D(t)` is an e-value from the held-out review labels `D`, items independent of `H`: the mean over a fixed
  grid of bets `lam` of `prod_{i in D, c_i >= t} (1 + lam (alpha - Z_i e_i / pi_i))`.
  - The bets are fractions of the floor and never depend on the items, so the product has expectation at most 1
    whenever the traffic's error rate at or above `t` is at least alpha (items i.i.d.; each draw independent
    with its known `pi_i`).
  - For independent `p` and `E`, `P(p / E <= delta) <= E[delta E] <= delta`.

Compared, over many repetitions of a calibrated model's traffic:
- `H only`: today's test;
- `H + D`: the combination above;
- `H + D pooled`: the review labels added to the binomial test as if uniform. This is not a valid test: it is
  shown for comparison only. Under these calibrated scenarios it happened to stay within delta, because the draw
  leans to items with more errors. `tests/routing/test_active_inference.py` shows a case where treating
  uncertainty-drawn labels as uniform fails.

Per design it reports the mean share of traffic at or above the certified threshold (automation) and the share
of repetitions whose certified threshold lets through an error rate above alpha (it must stay within delta).
Simulated confidences (Beta-distributed, calibrated), not data: the figures size the idea, they do not
measure the loop.

    .venv/bin/python bench/bench_review_certify.py [--repeats 500]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy.stats import binom

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from routing.probabilistic_review import inclusion_probabilities  # noqa: E402

ALPHA, DELTA = 0.05, 0.1
GRID_SIZE = 50
START_COUNT = 100  # labels (H's count, plus D's expected count for the combination) above the first candidate
BET_FRACTIONS = np.array([0.05, 0.1, 0.2, 0.4, 0.8])


def traffic(rng: np.random.Generator, n: int, shape: tuple[float, float],
            blind: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """`n` items of a model: confidence ~ Beta(shape), wrong with probability 1 - confidence, except that items
    above 0.99 are wrong with probability `blind` when that is larger (an over-confident blind spot)."""
    confidence = rng.beta(*shape, n)
    return confidence, rng.random(n) < _error(confidence, blind)


def _error(confidence: np.ndarray, blind: float) -> np.ndarray:
    return np.where(confidence > 0.99, np.maximum(1.0 - confidence, blind), 1.0 - confidence)


def truth_above(grid: np.ndarray, shape: tuple[float, float], blind: float,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The traffic's error rate and share at or above each candidate (a Monte Carlo sample of 500,000)."""
    confidence = rng.beta(*shape, 500_000)
    error = _error(confidence, blind)
    above = confidence[None, :] >= grid[:, None]
    return (above * error).sum(axis=1) / np.maximum(above.sum(axis=1), 1), above.mean(axis=1)


def binomial_p(confidence: np.ndarray, wrong: np.ndarray, grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    above = confidence[None, :] >= grid[:, None]
    n, k = above.sum(axis=1), (above & wrong[None, :]).sum(axis=1)
    return np.where(n > 0, binom.cdf(k, n, ALPHA), 1.0), n


def review_e_values(confidence: np.ndarray, pi: np.ndarray, labelled: np.ndarray, wrong: np.ndarray,
                    grid: np.ndarray, floor: float) -> np.ndarray:
    """The mixture e-value at each candidate (see the module docstring); the largest term is 1 / floor."""
    terms = np.where(labelled, wrong / pi, 0.0)
    bets = BET_FRACTIONS * floor
    log_factors = np.log1p(bets[None, :] * (ALPHA - terms[:, None]))  # items x bets
    above = (confidence[None, :] >= grid[:, None]).astype(float)      # candidates x items
    return np.exp(above @ log_factors).mean(axis=1)


def certified(p_values: np.ndarray, start: int) -> int | None:
    """Fixed sequence from the highest candidate (index `start`, grid descending): the last index rejected."""
    last = None
    for index in range(start, p_values.shape[0]):
        if p_values[index] > DELTA:
            break
        last = index
    return last


def start_index(counts: np.ndarray) -> int:
    enough = np.flatnonzero(counts >= START_COUNT)
    return int(enough[0]) if enough.size else counts.shape[0]


def run(shape: tuple[float, float], blind: float, n_held: int, n_review_items: int, budget: float, floor: float,
        share: float, repeats: int, seed: int) -> dict[str, tuple[float, float]]:
    rng = np.random.default_rng(seed)
    grid = np.quantile(rng.beta(*shape, 200_000), np.linspace(0.999, 0.05, GRID_SIZE))  # descending, fixed
    error_above, share_above = truth_above(grid, shape, blind, rng)
    found: dict[str, list[tuple[float, bool]]] = {"H only": [], "H + D": [], "H + D pooled (invalid)": []}
    for _ in range(repeats):
        held_c, held_w = traffic(rng, n_held, shape, blind)
        review_c, review_w = traffic(rng, n_review_items, shape, blind)
        pi = inclusion_probabilities(1.0 - review_c, budget=budget, floor=floor) * share  # the held-out share
        labelled = rng.random(n_review_items) < pi
        p_held, n_above = binomial_p(held_c, held_w, grid)
        expected_d = (pi[None, :] * (review_c[None, :] >= grid[:, None])).sum(axis=1)
        p_pooled, n_pooled = binomial_p(np.concatenate([held_c, review_c[labelled]]),
                                        np.concatenate([held_w, review_w[labelled]]), grid)
        e_review = review_e_values(review_c, pi, labelled, review_w, grid, floor * share)
        designs = {
            "H only": (p_held, start_index(n_above)),
            "H + D": (np.minimum(1.0, p_held / e_review), start_index(n_above + expected_d)),
            "H + D pooled (invalid)": (p_pooled, start_index(n_pooled)),
        }
        for name, (p_values, start) in designs.items():
            index = certified(p_values, start)
            found[name].append((0.0, False) if index is None else
                               (float(share_above[index]), bool(error_above[index] > ALPHA)))
    return {name: (float(np.mean([a for a, _ in rows])), float(np.mean([b for _, b in rows])))
            for name, rows in found.items()}


SCENARIOS = [
    # (label, Beta shape of the confidences, blind spot, uniform labels H, review items, review budget, floor,
    #  held-out share of the review labels)
    ("accuracy 0.93; H 200; one cycle of 400, 30 reviews, half held out", (10.0, 0.7), 0.0, 200, 400, 30.0, 0.01,
     0.5),
    ("accuracy 0.93; H 200; five cycles of 400, 30 reviews each, half held out", (10.0, 0.7), 0.0, 200, 2000, 150.0,
     0.01, 0.5),
    ("accuracy 0.96; H 200; one cycle of 400, 30 reviews, half held out", (20.0, 0.8), 0.0, 200, 400, 30.0, 0.01,
     0.5),
    ("accuracy 0.96; H 200; one cycle of 400, 30 reviews, all held out", (20.0, 0.8), 0.0, 200, 400, 30.0, 0.01,
     1.0),
    ("accuracy 0.96 with a blind spot (items above 0.99 wrong 1 in 16); H 200; five cycles, half held out",
     (20.0, 0.8), 0.0625, 200, 2000, 150.0, 0.01, 0.5),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(f"target alpha {ALPHA}, delta {DELTA}; {args.repeats} repetitions per scenario; cells: mean share of "
          "traffic at or above the certified threshold / share of repetitions above the target\n")
    print("| scenario | H only | H + D | H + D pooled (invalid) |\n|---|---|---|---|")
    for label, shape, blind, n_held, n_review, budget, floor, share in SCENARIOS:
        result = run(shape, blind, n_held, n_review, budget, floor, share, args.repeats, args.seed)
        cells = " | ".join(f"{automation:.3f} / {failed:.3f}" for automation, failed in result.values())
        print(f"| {label} | {cells} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
