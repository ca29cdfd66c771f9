"""Reliability diagrams: the only module of the package that imports matplotlib, and only when drawing."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from calibration.metrics import ReliabilityCurve

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["ReliabilityDisplay"]


class ReliabilityDisplay:
    """A reliability diagram of one ``ReliabilityCurve`` (cf. scikit-learn's ``CalibrationDisplay``).

    Top panel: accuracy per bin against mean confidence, with the bins' Wilson 95% intervals and the
    diagonal of perfect calibration; bottom panel: the number of samples per bin. Drawn on a bare
    ``matplotlib.figure.Figure`` with the Agg canvas, so it works headless and touches no pyplot state.
    """

    def __init__(self, curve: ReliabilityCurve, *, title: str = "", ece: float | None = None) -> None:
        self.curve = curve
        self.title = title
        self.ece = curve.expected_calibration_error if ece is None else ece

    def plot(self) -> ReliabilityDisplay:
        """Draw the figure into ``figure_`` (axes in ``ax_`` and ``ax_counts_``); returns self."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        figure = Figure(figsize=(5.0, 6.0), dpi=100)
        FigureCanvasAgg(figure)
        ax, ax_counts = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
        self._draw_reliability(ax)
        self._draw_counts(ax_counts)
        figure.tight_layout()
        self.figure_: Figure = figure
        self.ax_, self.ax_counts_ = ax, ax_counts
        return self

    def save(self, path: Path | str) -> Path:
        """Write the diagram as a PNG (drawing it first if needed) and return the path."""
        if not hasattr(self, "figure_"):
            self.plot()
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        self.figure_.savefig(target, format="png", metadata={"Software": None})
        return target

    def _draw_reliability(self, ax: Any) -> None:
        curve = self.curve
        filled = ~curve.empty
        edges = curve.bin_edges
        ax.plot([0.0, 1.0], [0.0, 1.0], linestyle="--", color="grey", linewidth=1, label="perfect")
        ax.bar(edges[:-1][filled], curve.accuracy[filled], width=np.diff(edges)[filled], align="edge",
               alpha=0.35, edgecolor="tab:blue", label="accuracy per bin")
        # Wilson bounds can sit a rounding error inside an accuracy of exactly 0 or 1: clip, matplotlib refuses < 0
        errors = np.clip(np.vstack([curve.accuracy - curve.wilson_low, curve.wilson_high - curve.accuracy]),
                         0.0, None)[:, filled]
        ax.errorbar(curve.mean_confidence[filled], curve.accuracy[filled], yerr=errors, fmt="o",
                    color="tab:blue", markersize=4, capsize=2, label="Wilson 95%")
        ax.set(xlim=(0.0, 1.0), ylim=(0.0, 1.0), ylabel="accuracy")
        ax.set_title(f"{self.title}  ECE {self.ece:.4f}  n={curve.n_samples}".strip(), fontsize=10)
        ax.legend(loc="upper left", fontsize=8)

    def _draw_counts(self, ax: Any) -> None:
        edges = self.curve.bin_edges
        ax.bar(edges[:-1], self.curve.count, width=np.diff(edges), align="edge", color="tab:grey")
        ax.set(xlabel="confidence", ylabel="count")
