"""Risk signals: vectorised detectors of unusual, smuggled or out-of-distribution input whose hits become reasons.

Every detector returns a :class:`Signal`: a boolean array (one entry per item), the reason code its hits carry and
the route they ask for (``escalate`` to an expert, or ``review``). :func:`combine_signals` folds any number of them
into the ``risk_escalate`` / ``risk_review`` / ``risk_reasons`` arguments of :func:`routing.decide.route`.

Text detectors run one regular expression over the whole batch joined by NUL characters and map each match back
to its item by bisection on the offsets, so the per-item cost is C code, not a Python loop. ``None`` stands for an
item without text (it never hits a text detector).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from routing.policy import RiskRule, linear_regex

__all__ = [
    "LengthOutlier",
    "OutOfDistribution",
    "RiskFlags",
    "Signal",
    "TextBatch",
    "combine_signals",
    "encoded_payload",
    "fold_flags",
    "mixed_scripts",
    "rule_hits",
    "text_lengths",
    "under_represented_segments",
    "zero_width_or_bidi",
]

Action = Literal["escalate", "review"]

_SEPARATOR = "\x00"


@dataclass(frozen=True, eq=False)
class Signal:
    """One detector's verdict: ``hits[i]`` says item i tripped it; ``code`` is the reason, ``action`` the route."""

    hits: np.ndarray
    code: str
    action: Action = "review"


@dataclass(frozen=True, eq=False)
class RiskFlags:
    """Signals folded per item, shaped for ``route(risk_escalate=..., risk_review=..., risk_reasons=...)``."""

    escalate: np.ndarray
    review: np.ndarray
    reasons: tuple[tuple[str, ...], ...]


def _as_texts(texts: Sequence[str | None]) -> list[str]:
    strings = ["" if text is None else text for text in texts]
    try:
        _SEPARATOR.join(strings)[:0]  # C-speed type check of every element
    except TypeError:
        bad = [i for i, text in enumerate(strings) if not isinstance(text, str)][:5]
        raise ValueError(
            f"texts must be strings or None; items {bad} are {[type(strings[i]).__name__ for i in bad]}"
        ) from None
    return strings


@dataclass(frozen=True, eq=False)
class TextBatch:
    """A batch of texts joined once as UTF-8 (NUL between items) so every text detector scans C-level bytes.

    Build it once per batch with :meth:`from_texts` and pass it to each detector; plain sequences work too.
    """

    texts: tuple[str, ...]
    raw: bytes
    data: np.ndarray
    ends: np.ndarray  # byte offset of the separator after each item

    @classmethod
    def from_texts(cls, texts: Sequence[str | None] | TextBatch) -> TextBatch:
        if isinstance(texts, TextBatch):
            return texts
        strings = _as_texts(texts)
        raw = _SEPARATOR.join(strings).encode("utf-8", "surrogatepass") + b"\x00"
        data = np.frombuffer(raw, dtype=np.uint8)
        ends = np.flatnonzero(data == 0)
        if ends.shape[0] != len(strings):  # a text holds NUL itself: count bytes item by item
            lengths = [len(text.encode("utf-8", "surrogatepass")) for text in strings]
            ends = np.cumsum(np.asarray(lengths, dtype=np.int64) + 1) - 1
        return cls(tuple(strings), raw, data, ends)

    def __len__(self) -> int:
        return len(self.texts)

    def hits_at(self, byte_positions: Any) -> np.ndarray:
        """Boolean hits for the items holding the given byte positions."""
        hits = np.zeros(len(self), dtype=bool)
        hits[np.searchsorted(self.ends, np.asarray(byte_positions, dtype=np.int64), side="left")] = True
        return hits


def _code_points(data: np.ndarray, leads: np.ndarray, width: int) -> np.ndarray:
    """Code points of the ``width``-byte UTF-8 sequences starting at ``leads``."""
    last = data.shape[0] - 1
    point = data[leads].astype(np.int64) & (0xFF >> (width + 1))
    for offset in range(1, width):
        point = (point << 6) | (data[np.minimum(leads + offset, last)].astype(np.int64) & 0x3F)
    return point


def _in_ranges(points: np.ndarray, ranges: Sequence[tuple[int, int]]) -> np.ndarray:
    inside = np.zeros(points.shape[0], dtype=bool)
    for low, high in ranges:
        inside |= (points >= low) & (points <= high)
    return inside


_INVISIBLE_RANGES = (
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x2064),
    (0x2066, 0x2069),
    (0xFEFF, 0xFEFF),
    (0xE0000, 0xE007F),
)


def _strings(texts: Sequence[str | None] | TextBatch) -> Sequence[str]:
    return texts.texts if isinstance(texts, TextBatch) else _as_texts(texts)


def text_lengths(texts: Sequence[str | None] | TextBatch) -> np.ndarray:
    """Characters per text (0 for None)."""
    strings = _strings(texts)
    return np.fromiter(map(len, strings), dtype=np.int64, count=len(strings))


def zero_width_or_bidi(texts: Sequence[str | None] | TextBatch, *, action: Action = "escalate") -> Signal:
    """Zero-width, bidirectional-control, invisible-operator, BOM and Unicode tag characters (U+200B-U+200F,
    U+202A-U+202E, U+2060-U+2064, U+2066-U+2069, U+FEFF, U+E0000-U+E007F): the carriers of token smuggling
    ("Ignore\u200b previous\u200b instructions") and of text that displays unlike it reads."""
    batch = TextBatch.from_texts(texts)
    three = np.flatnonzero(
        (batch.data == 0xE2) | (batch.data == 0xEF)
    )  # lead bytes of U+2000-U+2FFF, U+F000-
    four = np.flatnonzero(batch.data == 0xF3)  # lead byte of U+C0000-U+FFFFF (the tag block)
    points = np.concatenate([_code_points(batch.data, three, 3), _code_points(batch.data, four, 4)])
    positions = np.concatenate([three, four])
    return Signal(
        batch.hits_at(positions[_in_ranges(points, _INVISIBLE_RANGES)]), "zero_width_or_bidi", action
    )


def _byte_at(data: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """The bytes at ``positions``, 0 outside the data."""
    inside = (positions >= 0) & (positions < data.shape[0])
    return np.where(inside, data[np.clip(positions, 0, data.shape[0] - 1)], 0)


def _latin_letter_at(data: np.ndarray, positions: np.ndarray, *, ending: bool) -> np.ndarray:
    """Whether a Latin letter (ASCII, or U+00C0-U+027F: two bytes with lead 0xC3-0xC9) starts at each byte
    position, or with ``ending`` ends there."""
    at = _byte_at(data, positions)
    ascii_letter = ((at >= 0x41) & (at <= 0x5A)) | ((at >= 0x61) & (at <= 0x7A))
    if not ending:
        return ascii_letter | ((at >= 0xC3) & (at <= 0xC9))
    lead = _byte_at(data, positions - 1)  # a byte in 0xC3-0xC9 is always a lead byte, never a continuation
    return ascii_letter | ((at >= 0x80) & (at <= 0xBF) & (lead >= 0xC3) & (lead <= 0xC9))


def mixed_scripts(texts: Sequence[str | None] | TextBatch, *, action: Action = "escalate") -> Signal:
    """A Latin letter directly next to a Greek or Cyrillic one within a word (homoglyph spoofing, such as
    Cyrillic "а" in "pаypal"). Greek and Cyrillic letters are U+0370-U+04FF: lead bytes 0xCD-0xD3."""
    batch = TextBatch.from_texts(texts)
    data = batch.data
    leads = np.flatnonzero((data >= 0xCD) & (data <= 0xD3))
    leads = leads[_code_points(data, leads, 2) >= 0x0370]
    before = _latin_letter_at(data, leads - 1, ending=True)
    after = _latin_letter_at(data, leads + 2, ending=False)
    return Signal(batch.hits_at(leads[before | after]), "mixed_scripts", action)


_BASE64_ALPHABET = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
_RUN_TABLE = bytes(ord("A") if byte in _BASE64_ALPHABET else ord(" ") for byte in range(256))


def _looks_encoded(run: bytes) -> bool:
    if all(c in b"0123456789abcdefABCDEF" for c in run):
        return True
    return (
        any(c in b"0123456789" for c in run)
        and any(65 <= c <= 90 for c in run)
        and any(97 <= c <= 122 for c in run)
    )


def _long_runs(joined: bytes, min_length: int) -> list[int]:
    """Byte offsets of base64-alphabet runs of at least ``min_length`` that look encoded. ``bytes.translate``
    maps the alphabet to 'A' and the rest to ' ', and ``bytes.find`` (a skipping search) finds the runs."""
    marked = joined.translate(_RUN_TABLE)
    needle, starts = b"A" * min_length, []
    position = marked.find(needle)
    while position != -1:
        end = marked.find(b" ", position)
        end = len(marked) if end == -1 else end
        if _looks_encoded(joined[position:end]):
            starts.append(position)
        position = marked.find(needle, end)
    return starts


def encoded_payload(
    texts: Sequence[str | None] | TextBatch, *, min_length: int = 40, action: Action = "review"
) -> Signal:
    """A run of at least ``min_length`` base64 or hex characters: a payload hidden from human eyes and filters.

    A base64 run must mix digits, upper- and lower-case letters, so long ordinary words and paths do not hit.
    """
    if min_length < 8:
        raise ValueError(f"min_length must be >= 8, got {min_length!r}")
    batch = TextBatch.from_texts(texts)
    return Signal(batch.hits_at(_long_runs(batch.raw, min_length)), "encoded_payload", action)


class LengthOutlier:
    """Lengths far outside the training range: below ``lower_quantile`` / ``factor`` or above ``upper_quantile``
    times ``factor`` of the training lengths. ``fit`` returns self; fitted bounds in ``lower_`` and ``upper_``."""

    def __init__(
        self,
        *,
        lower_quantile: float = 0.001,
        upper_quantile: float = 0.999,
        factor: float = 2.0,
        action: Action = "review",
    ) -> None:
        if not (0.0 <= lower_quantile < upper_quantile <= 1.0) or factor < 1.0:
            raise ValueError(
                f"need 0 <= lower_quantile < upper_quantile <= 1 and factor >= 1, got {lower_quantile!r}, "
                f"{upper_quantile!r}, {factor!r}"
            )
        self.lower_quantile, self.upper_quantile, self.factor, self.action = (
            lower_quantile,
            upper_quantile,
            factor,
            action,
        )

    def fit(self, train_lengths: Any) -> LengthOutlier:
        lengths = np.asarray(train_lengths, dtype=float)
        if lengths.ndim != 1 or lengths.size == 0 or not (np.isfinite(lengths) & (lengths >= 0)).all():
            raise ValueError(
                f"train_lengths must be a non-empty 1-D array of lengths >= 0, got shape {lengths.shape}"
            )
        low, high = np.quantile(lengths, [self.lower_quantile, self.upper_quantile])
        self.lower_, self.upper_ = float(low / self.factor), float(high * self.factor)
        return self

    def predict(self, lengths: Any) -> Signal:
        if not hasattr(self, "upper_"):
            raise ValueError("LengthOutlier is not fitted; call fit(train_lengths) first")
        values = np.asarray(lengths, dtype=float)
        return Signal((values < self.lower_) | (values > self.upper_), "length_outlier", self.action)


class OutOfDistribution:
    """Distance of an item's features to the nearest training centroid, beyond the ``quantile`` of held-out
    training distances. Features are standardised with the training mean and spread.

    Centroids come from the class means when ``labels`` are given, else from k-means (scikit-learn) with
    ``n_centroids``. The threshold is fitted on a held-out ``holdout`` share of the training rows, so for new
    items exchangeable with the training data the false-alarm rate is about ``1 - quantile``.
    """

    def __init__(
        self,
        *,
        quantile: float = 0.99,
        n_centroids: int = 8,
        holdout: float = 0.2,
        action: Action = "review",
    ) -> None:
        if not (0.0 < quantile < 1.0) or n_centroids < 1 or not (0.0 < holdout < 1.0):
            raise ValueError(
                f"need quantile and holdout in (0, 1) and n_centroids >= 1, got {quantile!r}, {holdout!r}, "
                f"{n_centroids!r}"
            )
        self.quantile, self.n_centroids, self.holdout, self.action = quantile, n_centroids, holdout, action

    def fit(self, X_train: Any, *, rng: np.random.Generator, labels: Any = None) -> OutOfDistribution:
        features = _as_features(X_train)
        if features.shape[0] < 10 or not np.isfinite(features).all():
            raise ValueError(
                f"need at least 10 finite training rows to fit a distance threshold, got {features.shape[0]} rows"
            )
        self.mean_ = features.mean(axis=0)
        self.scale_ = np.where(features.std(axis=0) > 1e-12, features.std(axis=0), 1.0)
        standard = (features - self.mean_) / self.scale_
        order = rng.permutation(standard.shape[0])
        n_held = min(max(1, round(standard.shape[0] * self.holdout)), standard.shape[0] - 1)
        held, kept = order[:n_held], order[n_held:]
        self.centroids_ = self._centroids(
            standard[kept], None if labels is None else np.asarray(labels)[kept], rng
        )
        distances = np.sort(self._nearest(standard[held]))
        rank = min(int(np.ceil((distances.shape[0] + 1) * self.quantile)), distances.shape[0]) - 1
        self.threshold_ = float(distances[rank])
        return self

    def _centroids(
        self, standard: np.ndarray, labels: np.ndarray | None, rng: np.random.Generator
    ) -> np.ndarray:
        if labels is not None:
            classes, inverse = np.unique(labels, return_inverse=True)
            sums = np.zeros((classes.shape[0], standard.shape[1]))
            np.add.at(sums, inverse, standard)
            return sums / np.bincount(inverse)[:, None]
        from sklearn.cluster import KMeans

        k = min(self.n_centroids, standard.shape[0])
        seed = int(rng.integers(2**31 - 1))
        return KMeans(n_clusters=k, n_init=3, random_state=seed).fit(standard).cluster_centers_

    def _nearest(self, standard: np.ndarray) -> np.ndarray:
        """Euclidean distance to the nearest centroid, via |x|^2 - 2 x.c + |c|^2 (no (n, k, d) tensor)."""
        squared = (
            (standard**2).sum(axis=1)[:, None]
            - 2.0 * standard @ self.centroids_.T
            + (self.centroids_**2).sum(axis=1)
        )
        return np.sqrt(np.maximum(squared.min(axis=1), 0.0))

    def distance(self, X: Any) -> np.ndarray:
        if not hasattr(self, "threshold_"):
            raise ValueError("OutOfDistribution is not fitted; call fit(X_train, rng=...) first")
        features = _as_features(X, self.mean_.shape[0])
        return self._nearest((features - self.mean_) / self.scale_)

    def predict(self, X: Any) -> Signal:
        """Items whose distance exceeds the fitted threshold; rows with NaN features count as out of distribution."""
        distances = self.distance(X)
        return Signal(~(distances <= self.threshold_), "out_of_distribution", self.action)


def _as_features(X: Any, n_features: int | None = None) -> np.ndarray:
    features = np.asarray(X, dtype=float)
    if features.ndim != 2 or (n_features is not None and features.shape[1] != n_features):
        expected = "(n, d)" if n_features is None else f"(n, {n_features})"
        raise ValueError(f"features must be a matrix of shape {expected}, got shape {features.shape}")
    return features


def under_represented_segments(
    train_segment_counts: Mapping[str, int],
    segments: Sequence[str],
    *,
    min_share: float,
    action: Action = "review",
) -> Signal:
    """Items whose segment holds less than ``min_share`` of the training data (an unseen segment holds none)."""
    if not (0.0 < min_share < 1.0):
        raise ValueError(f"min_share must be in (0, 1), got {min_share!r}")
    total = sum(train_segment_counts.values())
    names, inverse = np.unique(np.asarray(segments, dtype=str), return_inverse=True)
    share = np.array([train_segment_counts.get(name, 0) / total if total else 0.0 for name in names.tolist()])
    return Signal((share < min_share)[inverse.reshape(-1)], "under_represented_segment", action)


_COMPARE = {
    ">": np.greater,
    ">=": np.greater_equal,
    "<": np.less,
    "<=": np.less_equal,
}


def _metadata_values(metadata_list: Sequence[Mapping[str, Any] | None], path: str) -> list[Any]:
    """The value at a dotted path per item; None where any step is absent."""
    values = list(metadata_list)
    for key in path.split(".")[1:]:
        values = [v.get(key) if type(v) is dict else _get(v, key) for v in values]  # dict first: no ABC check
    return values


def _get(value: Any, key: str) -> Any:
    return value.get(key) if isinstance(value, Mapping) else None


def _numeric_rule(values: list[Any], rule: RiskRule) -> np.ndarray:
    """Numeric comparison; a present value that is not a number hits (fail closed), a missing one does not."""
    present = np.fromiter((v is not None for v in values), dtype=bool, count=len(values))
    try:
        numbers = np.array(values, dtype=float)  # C path: numbers, numeric strings, None -> NaN
    except (TypeError, ValueError):
        numbers = np.array([_as_number(v) for v in values], dtype=float)
    with np.errstate(invalid="ignore"):
        compared = _COMPARE[rule.op](numbers, float(rule.value))
    return compared | (present & np.isnan(numbers))


def _as_number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return np.nan


def _contains(texts: Sequence[str | None] | TextBatch, needle: str) -> np.ndarray:
    """Case-insensitive substring hits. An ASCII needle is searched for in the lower-cased UTF-8 batch
    (``bytes.lower`` changes ASCII letters only, so byte offsets stay exact)."""
    batch = TextBatch.from_texts(texts)
    if not needle.isascii():
        folded = needle.casefold()
        return np.fromiter((folded in text.casefold() for text in batch.texts), dtype=bool, count=len(batch))
    pattern = re.compile(re.escape(needle.lower().encode("ascii")))
    return batch.hits_at([match.start() for match in pattern.finditer(batch.raw.lower())])


def _text_rule(texts: Sequence[str | None] | TextBatch, rule: RiskRule) -> np.ndarray:
    if rule.op == "contains":
        return _contains(texts, str(rule.value))
    if rule.op == "regex":  # per item: a pattern may hold anchors or '.', which must not span items
        pattern = linear_regex(str(rule.value))  # RE2: linear time, whatever the pattern
        strings = _strings(texts)
        return np.fromiter((pattern.search(t) is not None for t in strings), dtype=bool, count=len(strings))
    if rule.op == "==":
        return np.asarray(_strings(texts), dtype=object) == str(rule.value)
    raise ValueError(f"rule {rule.code!r}: operator {rule.op!r} does not apply to text")


def _value_rule(values: list[Any], rule: RiskRule) -> np.ndarray:
    if rule.op in _COMPARE:
        return _numeric_rule(values, rule)
    if rule.op == "==":
        target = rule.value
        return np.fromiter((v is not None and v == target for v in values), dtype=bool, count=len(values))
    strings = [v if isinstance(v, str) else None for v in values]
    return _text_rule(strings, rule)


def rule_hits(
    metadata_list: Sequence[Mapping[str, Any] | None],
    texts: Sequence[str | None] | TextBatch,
    rules: Sequence[RiskRule],
) -> tuple[Signal, ...]:
    """One signal per configured risk rule (the policy's ``risk_rules``), with the rule's code and action.

    Numeric operators compare numbers; a metadata value that is present but not a number hits (fail closed), a
    missing one does not. ``contains`` is case-insensitive; ``regex`` is RE2 syntax (Python's, less backreferences
    and lookaround), matched in linear time.
    """
    if len(metadata_list) != len(texts):
        raise ValueError(f"length mismatch: {len(metadata_list)} metadata entries, {len(texts)} texts")
    if any(rule.field == "text" for rule in rules):
        texts = TextBatch.from_texts(texts)
    signals = []
    for rule in rules:
        if rule.field == "text":
            hits = _text_rule(texts, rule)
        else:
            hits = _value_rule(_metadata_values(metadata_list, rule.field), rule)
        signals.append(Signal(np.asarray(hits, dtype=bool), rule.code, rule.action))
    return tuple(signals)


def combine_signals(signals: Sequence[Signal], n_items: int) -> RiskFlags:
    """Fold signals into per-item flags and reason codes (in the order given). An item with any escalate hit
    escalates; one with only review hits goes to review; its reasons list every signal that hit it."""
    for signal in signals:
        if signal.hits.shape != (n_items,):
            raise ValueError(
                f"length mismatch: signal {signal.code!r} has shape {signal.hits.shape}, expected ({n_items},)"
            )
    if not signals:
        empty = np.zeros(n_items, dtype=bool)
        return RiskFlags(empty, empty.copy(), ((),) * n_items)
    if len(signals) > 62:
        raise ValueError(f"at most 62 signals can be combined, got {len(signals)}")
    matrix = np.column_stack([signal.hits.astype(bool) for signal in signals])
    escalating = np.array([signal.action == "escalate" for signal in signals])
    # Each item's hit pattern as one integer, so the distinct patterns (a handful) are found by a 1-D unique.
    bits = matrix.astype(np.int64) @ (np.int64(1) << np.arange(len(signals), dtype=np.int64))
    patterns, inverse = np.unique(bits, return_inverse=True)
    codes = np.empty(patterns.shape[0], dtype=object)
    for position, pattern in enumerate(patterns.tolist()):
        codes[position] = tuple(signal.code for j, signal in enumerate(signals) if pattern >> j & 1)
    return RiskFlags(
        escalate=(matrix & escalating).any(axis=1),
        review=(matrix & ~escalating).any(axis=1),
        reasons=tuple(codes[inverse.reshape(-1)].tolist()),
    )


def fold_flags(flags: RiskFlags, extra: RiskFlags, positions: Sequence[int] | np.ndarray) -> RiskFlags:
    """``flags`` with ``extra``, the flags of the items at ``positions`` (a subset, such as the outputs of LLM
    pipelines in a batch), folded in: an item escalates or goes to review if either says so, and its reasons are
    its own followed by those ``extra`` gives it."""
    at = np.asarray(positions, dtype=np.int64).reshape(-1)
    n_items = flags.escalate.shape[0]
    if at.shape[0] != len(extra.reasons):
        raise ValueError(f"length mismatch: {at.shape[0]} positions for {len(extra.reasons)} flagged items")
    if at.size and (at.min() < 0 or at.max() >= n_items or np.unique(at).size != at.size):
        raise ValueError(f"positions must be distinct and in [0, {n_items}), got {at[:5].tolist()}...")
    escalate, review = flags.escalate.copy(), flags.review.copy()
    escalate[at] |= extra.escalate
    review[at] |= extra.review
    reasons = list(flags.reasons)
    for index in np.flatnonzero(extra.escalate | extra.review).tolist():  # the hits only, a handful
        reasons[at[index]] = (*reasons[at[index]], *extra.reasons[index])
    return RiskFlags(escalate, review, tuple(reasons))
