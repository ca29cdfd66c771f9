"""Recalibrators of top-label confidence against correctness; temperature scaling and one-vs-rest
recalibration of probability matrices."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np
from scipy.optimize import minimize, minimize_scalar
from scipy.special import expit, log_softmax, logit
from sklearn.isotonic import IsotonicRegression

from calibration._binning import assign_bins, bin_edges
from calibration._validation import (
    as_class_indices,
    as_confidence,
    as_confidence_and_correct,
    as_probabilities,
    as_sample_weight,
    check_n_bins,
)
from calibration.errors import CalibrationInputError, NotFittedError

__all__ = [
    "CALIBRATOR_METHODS",
    "BetaCalibrator",
    "ConfidenceCalibrator",
    "HistogramBinningCalibrator",
    "IdentityCalibrator",
    "IsotonicCalibrator",
    "OneVsRestCalibrator",
    "PlattCalibrator",
    "TemperatureScaling",
    "calibrator_from_dict",
]

LOGIT_CLIP = 1e-12  # keeps logit(0) and logit(1) finite
LOG_TEMPERATURE_BOUNDS = (-5.0, 5.0)  # T in [0.0067, 148]: far beyond any useful rescaling


class ConfidenceCalibrator(ABC):
    """Base of the confidence recalibrators: ``fit(confidence, correct) -> self``, ``predict(confidence)``."""

    method: ClassVar[str] = ""
    _fitted_attributes: ClassVar[tuple[str, ...]] = ()

    def fit(self, confidence: Any, correct: Any, sample_weight: Any = None) -> ConfidenceCalibrator:
        """Fit on confidences and 0/1 correctness; ``sample_weight`` (positive, e.g. ``1 / inclusion
        probability`` of each labelled item) makes the fit stand for the population the labels were drawn from."""
        conf, hits = as_confidence_and_correct(confidence, correct)
        self._fit(conf, hits, as_sample_weight(sample_weight, n_samples=conf.shape[0]))
        self.n_samples_ = int(conf.shape[0])
        return self

    def predict(self, confidence: Any) -> np.ndarray:
        """Calibrated confidence, clipped to [0, 1]."""
        self._check_fitted()
        return np.clip(self._predict(as_confidence(confidence)), 0.0, 1.0)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict holding ``method``, the constructor options and the fitted parameters."""
        self._check_fitted()
        return {"method": self.method, "n_samples": self.n_samples_, **self._params_to_dict()}

    def _check_fitted(self) -> None:
        if not hasattr(self, "n_samples_"):
            raise NotFittedError(
                f"{type(self).__name__} is not fitted yet; call fit(confidence, correct) first"
            )

    @abstractmethod
    def _fit(self, confidence: np.ndarray, correct: np.ndarray, weight: np.ndarray) -> None:
        """Set the fitted attributes from validated arrays (``weight`` has mean 1)."""

    @abstractmethod
    def _predict(self, confidence: np.ndarray) -> np.ndarray:
        """Map validated confidences through the fitted parameters."""

    def _params_to_dict(self) -> dict[str, Any]:
        return {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class IdentityCalibrator(ConfidenceCalibrator):
    """Leaves confidence unchanged; the baseline every other method must beat."""

    method = "identity"

    def _fit(self, confidence: np.ndarray, correct: np.ndarray, weight: np.ndarray) -> None:
        return None

    def _predict(self, confidence: np.ndarray) -> np.ndarray:
        return confidence.copy()


def _confidence_logit(confidence: np.ndarray) -> np.ndarray:
    return logit(np.clip(confidence, LOGIT_CLIP, 1.0 - LOGIT_CLIP))


def _platt_loss(params: np.ndarray, z: np.ndarray, correct: np.ndarray,
                weight: np.ndarray) -> tuple[float, np.ndarray]:
    a, b = params
    score = a * z + b
    # log(1 + e^s) - y s is the logistic negative log-likelihood, written stably
    loss = np.mean(weight * (np.logaddexp(0.0, score) - correct * score))
    residual = weight * (expit(score) - correct)
    return float(loss), np.array([np.mean(residual * z), np.mean(residual)])


def platt_targets(correct: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Platt's (1999) smoothed targets, as scikit-learn's sigmoid calibration: (N+ + 1) / (N+ + 2) for a hit and
    1 / (N- + 2) for a miss, N+ and N- the weighted counts, so a few all-right labels do not fit confidence 1."""
    positives = float(np.sum(weight * correct))
    negatives = float(np.sum(weight * (1.0 - correct)))
    return np.where(correct > 0.5, (positives + 1.0) / (positives + 2.0), 1.0 / (negatives + 2.0))


class PlattCalibrator(ConfidenceCalibrator):
    """Logistic regression of correctness on logit(confidence): calibrated = sigmoid(a_ * logit(c) + b_)."""

    method = "platt"

    def _fit(self, confidence: np.ndarray, correct: np.ndarray, weight: np.ndarray) -> None:
        z = _confidence_logit(confidence)
        target = platt_targets(correct, weight)
        start = np.array([1.0, 0.0])  # the identity map, so the fit can only lower the log-loss
        result = minimize(_platt_loss, start, args=(z, target, weight), jac=True, method="L-BFGS-B")
        # kept only if it beats the identity on the labels themselves (not only on the smoothed targets)
        better = _platt_loss(result.x, z, correct, weight)[0] <= _platt_loss(start, z, correct, weight)[0]
        self.a_, self.b_ = (float(v) for v in (result.x if better else start))

    def _predict(self, confidence: np.ndarray) -> np.ndarray:
        return expit(self.a_ * _confidence_logit(confidence) + self.b_)

    def _params_to_dict(self) -> dict[str, Any]:
        return {"a": self.a_, "b": self.b_}


def _beta_features(confidence: np.ndarray) -> np.ndarray:
    clipped = np.clip(confidence, LOGIT_CLIP, 1.0 - LOGIT_CLIP)
    return np.column_stack([np.log(clipped), -np.log1p(-clipped)])


def _beta_loss(params: np.ndarray, features: np.ndarray, correct: np.ndarray,
               weight: np.ndarray) -> tuple[float, np.ndarray]:
    score = features @ params[:2] + params[2]
    loss = np.mean(weight * (np.logaddexp(0.0, score) - correct * score))
    residual = weight * (expit(score) - correct)
    return float(loss), np.append(residual @ features / correct.shape[0], np.mean(residual))


class BetaCalibrator(ConfidenceCalibrator):
    """Beta calibration (Kull, Silva Filho and Flach, 2017): logistic regression of correctness on
    [log c, -log(1 - c)], calibrated = sigmoid(a_ log c - b_ log(1 - c) + c_).

    a_ and b_ are kept >= 0 so the map is monotone; a = b = 1, c = 0 is the identity, which is where the fit
    starts, so it can only lower the log-loss on its fitting data. Unlike Platt it can bend both tails
    independently (an inverse-S or a one-sided correction), which logistic-on-logit cannot.
    """

    method = "beta"

    def _fit(self, confidence: np.ndarray, correct: np.ndarray, weight: np.ndarray) -> None:
        features = _beta_features(confidence)
        start = np.array([1.0, 1.0, 0.0])
        bounds = [(0.0, None), (0.0, None), (None, None)]
        result = minimize(
            _beta_loss, start, args=(features, correct, weight), jac=True, method="L-BFGS-B", bounds=bounds
        )
        better = result.fun <= _beta_loss(start, features, correct, weight)[0]
        self.a_, self.b_, self.c_ = (float(v) for v in (result.x if better else start))

    def _predict(self, confidence: np.ndarray) -> np.ndarray:
        return expit(_beta_features(confidence) @ np.array([self.a_, self.b_]) + self.c_)

    def _params_to_dict(self) -> dict[str, Any]:
        return {"a": self.a_, "b": self.b_, "c": self.c_}


class IsotonicCalibrator(ConfidenceCalibrator):
    """Monotone step fit (scikit-learn isotonic regression), kept as thresholds and applied with np.interp."""

    method = "isotonic"

    def _fit(self, confidence: np.ndarray, correct: np.ndarray, weight: np.ndarray) -> None:
        model = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip")
        model.fit(confidence, correct, sample_weight=weight)
        self.x_thresholds_ = np.asarray(model.X_thresholds_, dtype=float)
        self.y_thresholds_ = np.asarray(model.y_thresholds_, dtype=float)

    def _predict(self, confidence: np.ndarray) -> np.ndarray:
        return np.interp(confidence, self.x_thresholds_, self.y_thresholds_)

    def _params_to_dict(self) -> dict[str, Any]:
        return {"x_thresholds": self.x_thresholds_.tolist(), "y_thresholds": self.y_thresholds_.tolist()}


class HistogramBinningCalibrator(ConfidenceCalibrator):
    """Equal-width bins on [0, 1]; each bin maps to its observed accuracy, an empty bin to its centre."""

    method = "histogram"

    def __init__(self, *, n_bins: int = 15) -> None:
        self.n_bins = check_n_bins(n_bins)

    def _fit(self, confidence: np.ndarray, correct: np.ndarray, weight: np.ndarray) -> None:
        edges = bin_edges(confidence, n_bins=self.n_bins, strategy="uniform")
        index = assign_bins(confidence, edges)
        count = np.bincount(index, weights=weight, minlength=self.n_bins)
        hits = np.bincount(index, weights=weight * correct, minlength=self.n_bins)
        centres = (edges[:-1] + edges[1:]) / 2.0
        self.bin_edges_ = edges
        self.bin_values_ = np.where(count > 0, hits / np.where(count > 0, count, 1.0), centres)

    def _predict(self, confidence: np.ndarray) -> np.ndarray:
        return self.bin_values_[assign_bins(confidence, self.bin_edges_)]

    def _params_to_dict(self) -> dict[str, Any]:
        return {
            "n_bins": self.n_bins,
            "bin_edges": self.bin_edges_.tolist(),
            "bin_values": self.bin_values_.tolist(),
        }

    def __repr__(self) -> str:
        return f"HistogramBinningCalibrator(n_bins={self.n_bins})"


def _temperature_nll(log_temperature: float, log_probs: np.ndarray, labels: np.ndarray) -> float:
    scaled = log_softmax(log_probs / np.exp(log_temperature), axis=1)
    return float(-np.mean(scaled[np.arange(labels.shape[0]), labels]))


class TemperatureScaling:
    """Divides log-probabilities of a (n, k) matrix by one temperature fitted to minimise the log-loss."""

    method: ClassVar[str] = "temperature"

    def fit(self, y_prob: Any, y_true: Any) -> TemperatureScaling:
        log_probs = self._log_probs(y_prob)
        labels = as_class_indices(y_true, n_samples=log_probs.shape[0], n_classes=log_probs.shape[1])
        result = minimize_scalar(
            _temperature_nll, bounds=LOG_TEMPERATURE_BOUNDS, args=(log_probs, labels), method="bounded"
        )
        better = result.fun <= _temperature_nll(0.0, log_probs, labels)
        self.temperature_ = float(np.exp(result.x)) if better else 1.0
        self.n_samples_ = int(log_probs.shape[0])
        return self

    def predict_proba(self, y_prob: Any) -> np.ndarray:
        """Temperature-scaled probabilities; rows still sum to one."""
        self._check_fitted()
        return np.exp(log_softmax(self._log_probs(y_prob) / self.temperature_, axis=1))

    def to_dict(self) -> dict[str, Any]:
        self._check_fitted()
        return {"method": self.method, "n_samples": self.n_samples_, "temperature": self.temperature_}

    @staticmethod
    def _log_probs(y_prob: Any) -> np.ndarray:
        probs = as_probabilities(y_prob)
        if probs.ndim != 2:
            raise CalibrationInputError(
                f"y_prob must be a (n, k) probability matrix, got shape {probs.shape}"
            )
        return np.log(np.clip(probs, LOGIT_CLIP, 1.0))

    def _check_fitted(self) -> None:
        if not hasattr(self, "temperature_"):
            raise NotFittedError("TemperatureScaling is not fitted yet; call fit(y_prob, y_true) first")

    def __repr__(self) -> str:
        return "TemperatureScaling()"


CALIBRATOR_METHODS: dict[str, type[ConfidenceCalibrator]] = {
    cls.method: cls
    for cls in (IdentityCalibrator, PlattCalibrator, IsotonicCalibrator, HistogramBinningCalibrator, BetaCalibrator)
}


class OneVsRestCalibrator:
    """Multiclass recalibration with a binary method: one calibrator per class maps p_k to P(y = k), then each
    row is divided by its sum (rows whose calibrated values are all 0 become uniform, as scikit-learn does).

    With two classes only the positive column is calibrated and the other is its complement, so for k = 2
    the log-loss on the fitting data cannot rise when it cannot for the binary method. For k > 2 the
    renormalisation can undo part of a per-class fit; no such guarantee holds.
    """

    method: ClassVar[str] = "one_vs_rest"

    def __init__(self, *, method: str = "platt", n_bins: int = 15) -> None:
        if method not in CALIBRATOR_METHODS:
            raise CalibrationInputError(
                f"method must be one of {list(CALIBRATOR_METHODS)}, got {method!r}"
            )
        self.base_method = method
        self.n_bins = check_n_bins(n_bins)

    def fit(self, y_prob: Any, y_true: Any) -> OneVsRestCalibrator:
        probs = self._matrix(y_prob)
        labels = as_class_indices(y_true, n_samples=probs.shape[0], n_classes=probs.shape[1])
        columns = [1] if probs.shape[1] == 2 else range(probs.shape[1])
        self.calibrators_ = [
            self._new_calibrator().fit(probs[:, k], (labels == k).astype(float)) for k in columns
        ]
        self.n_classes_ = int(probs.shape[1])
        self.n_samples_ = int(probs.shape[0])
        return self

    def predict_proba(self, y_prob: Any) -> np.ndarray:
        """Calibrated (n, k) probabilities; every row sums to one."""
        self._check_fitted()
        probs = self._matrix(y_prob)
        if probs.shape[1] != self.n_classes_:
            raise CalibrationInputError(
                f"y_prob has {probs.shape[1]} classes, the calibrator was fitted on {self.n_classes_}"
            )
        if self.n_classes_ == 2:
            positive = self.calibrators_[0].predict(probs[:, 1])
            return np.column_stack([1.0 - positive, positive])
        calibrated = np.column_stack([c.predict(probs[:, k]) for k, c in enumerate(self.calibrators_)])
        total = calibrated.sum(axis=1, keepdims=True)
        uniform = np.full_like(calibrated, 1.0 / self.n_classes_)
        return np.divide(calibrated, total, out=uniform, where=total > 0)

    def to_dict(self) -> dict[str, Any]:
        self._check_fitted()
        return {
            "method": self.method,
            "n_samples": self.n_samples_,
            "base_method": self.base_method,
            "n_bins": self.n_bins,
            "n_classes": self.n_classes_,
            "calibrators": [c.to_dict() for c in self.calibrators_],
        }

    def _new_calibrator(self) -> ConfidenceCalibrator:
        if self.base_method == HistogramBinningCalibrator.method:
            return HistogramBinningCalibrator(n_bins=self.n_bins)
        return CALIBRATOR_METHODS[self.base_method]()

    @staticmethod
    def _matrix(y_prob: Any) -> np.ndarray:
        probs = as_probabilities(y_prob)
        if probs.ndim != 2:
            raise CalibrationInputError(
                f"y_prob must be a (n, k) probability matrix, got shape {probs.shape}"
            )
        return probs

    def _check_fitted(self) -> None:
        if not hasattr(self, "calibrators_"):
            raise NotFittedError("OneVsRestCalibrator is not fitted yet; call fit(y_prob, y_true) first")

    def __repr__(self) -> str:
        return f"OneVsRestCalibrator(method={self.base_method!r}, n_bins={self.n_bins})"


def _require_keys(data: dict[str, Any], keys: tuple[str, ...]) -> None:
    missing = [key for key in keys if key not in data]
    if missing:
        raise CalibrationInputError(
            f"calibrator dict for method {data.get('method')!r} is missing keys {missing}"
        )


def _float_array(values: Any, *, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    if array.ndim != 1 or array.size == 0 or not np.all(np.isfinite(array)):
        raise CalibrationInputError(
            f"calibrator dict field {name!r} must be a non-empty finite list, got {values!r}"
        )
    return array


def _require_same_length(actual: int, expected: int, name: str) -> None:
    if actual != expected:
        raise CalibrationInputError(
            f"calibrator dict field {name!r} has {actual} entries, expected {expected}"
        )


def calibrator_from_dict(
    data: dict[str, Any],
) -> ConfidenceCalibrator | TemperatureScaling | OneVsRestCalibrator:
    """Rebuild a fitted calibrator from its ``to_dict()`` output."""
    method = data.get("method") if isinstance(data, dict) else None
    known = (*CALIBRATOR_METHODS, TemperatureScaling.method, OneVsRestCalibrator.method)
    if method not in known:
        raise CalibrationInputError(f"unknown calibrator method {method!r}; expected one of {list(known)}")
    _require_keys(data, ("n_samples",))
    if method == OneVsRestCalibrator.method:
        return _restore_one_vs_rest(data)
    if method == TemperatureScaling.method:
        _require_keys(data, ("temperature",))
        scaler = TemperatureScaling()
        scaler.temperature_, scaler.n_samples_ = float(data["temperature"]), int(data["n_samples"])
        return scaler
    calibrator = _restore_params(method, data)
    calibrator.n_samples_ = int(data["n_samples"])
    return calibrator


def _restore_one_vs_rest(data: dict[str, Any]) -> OneVsRestCalibrator:
    _require_keys(data, ("base_method", "n_bins", "n_classes", "calibrators"))
    wrapper = OneVsRestCalibrator(method=data["base_method"], n_bins=int(data["n_bins"]))
    calibrators = [calibrator_from_dict(part) for part in data["calibrators"]]
    n_classes = int(data["n_classes"])
    _require_same_length(len(calibrators), 1 if n_classes == 2 else n_classes, "calibrators")
    parts = [c for c in calibrators if type(c) is CALIBRATOR_METHODS[wrapper.base_method]]
    if len(parts) != len(calibrators) or not all(isinstance(c, ConfidenceCalibrator) for c in parts):
        raise CalibrationInputError(
            f"calibrator dict field 'calibrators' must all be {wrapper.base_method!r} calibrators"
        )
    wrapper.calibrators_ = [c for c in parts if isinstance(c, ConfidenceCalibrator)]
    wrapper.n_classes_, wrapper.n_samples_ = n_classes, int(data["n_samples"])
    return wrapper


def _restore_params(method: str, data: dict[str, Any]) -> ConfidenceCalibrator:
    if method == "beta":
        _require_keys(data, ("a", "b", "c"))
        beta = BetaCalibrator()
        beta.a_, beta.b_, beta.c_ = float(data["a"]), float(data["b"]), float(data["c"])
        return beta
    if method == "platt":
        _require_keys(data, ("a", "b"))
        platt = PlattCalibrator()
        platt.a_, platt.b_ = float(data["a"]), float(data["b"])
        return platt
    if method == "isotonic":
        _require_keys(data, ("x_thresholds", "y_thresholds"))
        isotonic = IsotonicCalibrator()
        isotonic.x_thresholds_ = _float_array(data["x_thresholds"], name="x_thresholds")
        isotonic.y_thresholds_ = _float_array(data["y_thresholds"], name="y_thresholds")
        _require_same_length(isotonic.x_thresholds_.shape[0], isotonic.y_thresholds_.shape[0], "x_thresholds")
        return isotonic
    if method == "histogram":
        _require_keys(data, ("n_bins", "bin_edges", "bin_values"))
        histogram = HistogramBinningCalibrator(n_bins=int(data["n_bins"]))
        histogram.bin_edges_ = _float_array(data["bin_edges"], name="bin_edges")
        histogram.bin_values_ = _float_array(data["bin_values"], name="bin_values")
        _require_same_length(histogram.bin_edges_.shape[0], histogram.n_bins + 1, "bin_edges")
        _require_same_length(histogram.bin_values_.shape[0], histogram.n_bins, "bin_values")
        return histogram
    return IdentityCalibrator()
