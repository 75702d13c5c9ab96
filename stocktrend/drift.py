"""Drift evaluation: is the model still as good as when it was accepted, and are its inputs alike?

Pure functions over frames (predictions in the record contract of
:mod:`stocktrend.storage.records`, validated prices) and the model's checkpoint
metadata; nothing is read from disk or a database here. The ``evaluate-drift``
flow loads the inputs and stores the :class:`DriftReport` this module builds.

Three views, each compared with what the checkpoint recorded when it was made:

**Performance.** A prediction for (ticker, t) with horizon h resolves at the
h-th NYSE session after t, once that session is on or before the evaluation
date and both closes are known; its outcome is then ``close(t+h) > close(t)``,
the training label's definition. Predictions not resolved by then are counted
as pending and never enter a metric. Over the trailing window (default the
last 60 sessions that have resolved predictions) accuracy, ROC AUC, Brier score
and log loss are set beside the reference figures in the checkpoint's
``metrics`` (its held-out evaluation), and an exact one-sided binomial test asks
whether accuracy is below the reference accuracy: H0 ``accuracy >= reference``,
rejected when ``P(X <= correct | n, reference) < alpha``. With fewer than
``min_samples`` resolved predictions the test is not run.

**Data.** The Population Stability Index per feature compares the training
reference histogram stored in the checkpoint (decile bins,
:mod:`stocktrend.histograms`) with the same bins filled by the feature rows of
the last ``window_sessions`` sessions for the tickers being scored::

    PSI = sum_i (a_i - e_i) * ln(a_i / e_i)

with e and a the reference and recent bin shares, each floored at
``psi_floor`` (1e-4) so an empty bin gives a large but finite term. Conventions:
< 0.1 stable, 0.1 to 0.25 moderate shift, >= 0.25 significant shift (drifted).
Calendar features (day of week, month) are excluded by default: a 60-session
window covers one season by construction, so their "drift" says nothing.

**Predictions.** Mean P(up) and the share of bullish calls over the latest
sessions, beside the checkpoint's figures where it recorded them.

Decision: ``drift`` when the accuracy test rejects, or when the share of
(non-excluded) features with PSI >= 0.25 reaches ``drifted_share_threshold``;
otherwise ``no_drift``. The report names the rule(s) that fired and the numbers.

Why the data-drift default is 0.8, not a classical 0.2-0.3: features such as
20-session volatility are strongly autocorrelated, so a 60-session window holds
a handful of independent observations and PSI is large even in quiet markets.
On the bundled sample (v2.0's reference histograms, 60-session windows ending
at each month end 2003-2013) the median share of drifted features is 0.57 and
the 90th percentile 0.82; 0.8 fires in the 2008 crash quarter and a few other
regime changes, not every other month. The same dependence makes the binomial
p-value optimistic (neighbouring predictions share most of their horizon and
the whole market), which errs towards detecting drift; the report says so.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from scipy import stats

from stocktrend import calendar
from stocktrend.evaluation import core_metrics, json_safe, reliability_table
from stocktrend.features import FEATURE_FAMILIES, build_features
from stocktrend.histograms import bin_counts
from stocktrend.plotting import new_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "DRIFT",
    "NO_DRIFT",
    "AccuracyTest",
    "DriftConfig",
    "DriftReport",
    "FeatureDrift",
    "ModelReference",
    "PredictionDrift",
    "accuracy_drop_test",
    "build_report",
    "feature_drift",
    "population_stability_index",
    "psi_band",
    "recent_feature_rows",
    "resolve_outcomes",
    "trailing_window",
]

DRIFT = "drift"
NO_DRIFT = "no_drift"
CALENDAR_FEATURES: tuple[str, ...] = FEATURE_FAMILIES["calendar"]


class DriftConfig(BaseModel):
    """The knobs of the drift decision; defaults are explained in the module docstring."""

    model_config = ConfigDict(frozen=True)

    window_sessions: int = Field(60, ge=1, description="Sessions in the trailing windows")
    alpha: float = Field(0.05, gt=0, lt=1, description="Level of the accuracy test")
    min_samples: int = Field(100, ge=1, description="Resolved predictions needed for the test")
    psi_moderate: float = Field(0.1, gt=0, description="PSI from which a shift is moderate")
    psi_drift: float = Field(0.25, gt=0, description="PSI from which a feature has drifted")
    drifted_share_threshold: float = Field(
        0.8, gt=0, le=1, description="Share of drifted features that means data drift"
    )
    exclude_features: tuple[str, ...] = Field(
        CALENDAR_FEATURES, description="Features left out of the drifted share"
    )
    psi_floor: float = Field(1e-4, gt=0, lt=0.1, description="Floor of a bin's share in PSI")


# --------------------------------------------------------------------------- reference


@dataclass(frozen=True)
class ModelReference:
    """What the evaluated model recorded about itself: identity, reference figures, histograms."""

    version: str
    sha256: str
    feature_names: tuple[str, ...]
    horizon: int
    reference_histograms: Mapping[str, Any]
    metrics: Mapping[str, Any]

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any], sha256: str) -> ModelReference:
        """From a checkpoint's ``stocktrend`` section (``ModelBundle.metadata``)."""
        return cls(
            version=str(metadata["model_version"]),
            sha256=sha256,
            feature_names=tuple(metadata["feature_names"]),
            horizon=int(metadata["horizon"]),
            reference_histograms=metadata.get("reference_histograms") or {},
            metrics=metadata.get("metrics") or {},
        )

    def figures(self) -> dict[str, Any]:
        """Reference accuracy, AUC, Brier, log loss and prediction shares, where recorded."""
        model = self.metrics.get("model") or {}
        out: dict[str, Any] = {
            key: model.get(key) for key in ("accuracy", "roc_auc", "brier", "log_loss")
        }
        out["n"] = model.get("n")
        period = self.metrics.get("period") or {}
        out["period"] = f"{period.get('start')}..{period.get('end')}" if period else None
        matrix = model.get("confusion_matrix")
        if matrix and model.get("n"):
            n = float(model["n"])
            out["bullish_share"] = (matrix[0][1] + matrix[1][1]) / n
            out["base_rate"] = (matrix[1][0] + matrix[1][1]) / n
        else:
            out["bullish_share"] = out["base_rate"] = None
        out["mean_p_up"] = (self.metrics.get("prediction") or {}).get("mean_p_up")
        return out


# --------------------------------------------------------------------------- outcomes


def _sessions_after(dates: pd.DatetimeIndex, horizons: np.ndarray) -> pd.DatetimeIndex:
    """The ``h``-th NYSE session after each date (NaT when the date is not a session)."""
    if len(dates) == 0:
        return pd.DatetimeIndex([], dtype="datetime64[ns]")
    last = calendar.session_offset(dates.max(), int(horizons.max()))
    sessions = calendar.sessions(dates.min(), last)
    position = sessions.get_indexer(dates)
    target = position + horizons
    ok = (position >= 0) & (target < len(sessions))
    values = np.full(len(dates), np.datetime64("NaT"), dtype="datetime64[ns]")
    values[ok] = sessions.to_numpy()[target[ok]]
    return pd.DatetimeIndex(values)


def resolve_outcomes(
    predictions: pd.DataFrame, prices: pd.DataFrame, as_of: str | pd.Timestamp
) -> pd.DataFrame:
    """Predictions made on or before ``as_of``, with their outcome where it is known by then.

    Adds ``resolve_date`` (the h-th session after as_of_date), ``realised_return``,
    ``outcome`` (1.0 bullish, 0.0 bearish, NaN pending), ``resolved`` and
    ``correct`` (NaN while pending). Prices dated after ``as_of`` are ignored, so
    evaluating the past with today's prices cannot peek.
    """
    day = pd.Timestamp(as_of).normalize()
    made = pd.DatetimeIndex(pd.to_datetime(predictions["as_of_date"]))
    frame = predictions.loc[np.asarray(made <= day)].reset_index(drop=True).copy()
    dates = pd.DatetimeIndex(pd.to_datetime(frame["as_of_date"])).as_unit("ns")
    tickers = frame["ticker"].astype(str).to_numpy()
    resolve = _sessions_after(dates, frame["horizon"].to_numpy(dtype=np.int64))
    known = prices.loc[pd.to_datetime(prices["date"]) <= day, ["date", "ticker", "close"]]
    close = pd.Series(
        known["close"].to_numpy(dtype=np.float64),
        index=pd.MultiIndex.from_arrays(
            [pd.DatetimeIndex(known["date"]).as_unit("ns"), known["ticker"].astype(str)]
        ),
    )
    close = close[~close.index.duplicated(keep="last")]
    start = close.reindex(pd.MultiIndex.from_arrays([dates, tickers])).to_numpy()
    end = close.reindex(pd.MultiIndex.from_arrays([resolve, tickers])).to_numpy()
    resolved = np.asarray(resolve <= day) & np.isfinite(start) & np.isfinite(end)
    outcome = np.where(resolved, (end > start).astype(np.float64), np.nan)
    frame["resolve_date"] = resolve
    frame["realised_return"] = np.where(resolved, end / start - 1.0, np.nan)
    frame["outcome"] = outcome
    frame["resolved"] = resolved
    predicted = frame["predicted_class"].to_numpy(dtype=np.float64)
    frame["correct"] = np.where(resolved, (predicted == outcome).astype(np.float64), np.nan)
    return frame


def trailing_window(outcomes: pd.DataFrame, n_sessions: int) -> pd.DataFrame:
    """Resolved predictions of the last ``n_sessions`` as-of dates that have any."""
    resolved = outcomes.loc[outcomes["resolved"].to_numpy(dtype=bool)]
    days = np.sort(pd.unique(resolved["as_of_date"]))[-n_sessions:]
    return resolved.loc[resolved["as_of_date"].isin(days)].reset_index(drop=True)


# --------------------------------------------------------------------------- performance


@dataclass(frozen=True)
class AccuracyTest:
    """Exact one-sided binomial test of H0 ``accuracy >= reference`` against "it fell"."""

    n: int
    n_correct: int
    accuracy: float | None
    reference_accuracy: float | None
    alpha: float
    min_samples: int
    p_value: float | None
    """``P(X <= n_correct)`` for ``X ~ Binomial(n, reference)``; None when not run."""
    rejected: bool
    note: str


def accuracy_drop_test(
    n_correct: int,
    n: int,
    reference_accuracy: float | None,
    *,
    alpha: float = 0.05,
    min_samples: int = 100,
) -> AccuracyTest:
    """Is ``n_correct`` of ``n`` significantly below ``reference_accuracy``?"""
    accuracy = n_correct / n if n else None
    common = dict(
        n=n,
        n_correct=n_correct,
        accuracy=accuracy,
        reference_accuracy=reference_accuracy,
        alpha=alpha,
        min_samples=min_samples,
    )
    if reference_accuracy is None:
        note = "not run: the checkpoint records no reference accuracy"
        return AccuracyTest(**common, p_value=None, rejected=False, note=note)
    if n < min_samples:
        note = f"not run: {n} resolved predictions, fewer than the minimum {min_samples}"
        return AccuracyTest(**common, p_value=None, rejected=False, note=note)
    p_value = float(stats.binomtest(n_correct, n, reference_accuracy, alternative="less").pvalue)
    rejected = p_value < alpha
    relation = "<" if rejected else ">="
    note = f"one-sided exact binomial p={_p(p_value)} {relation} alpha {alpha:g}"
    return AccuracyTest(**common, p_value=p_value, rejected=rejected, note=note)


def _window_metrics(window: pd.DataFrame) -> dict[str, Any]:
    if window.empty:
        return {"n": 0, "accuracy": None, "roc_auc": None, "brier": None, "log_loss": None}
    y = window["outcome"].to_numpy(dtype=np.int64)
    p = window["prob_up"].to_numpy(dtype=np.float64)
    m = core_metrics(y, p)
    return {
        "n": m.n,
        "accuracy": m.accuracy,
        "roc_auc": m.roc_auc,
        "brier": m.brier,
        "log_loss": m.log_loss,
        "balanced_accuracy": m.balanced_accuracy,
        "base_rate": float(y.mean()),
    }


# --------------------------------------------------------------------------- data drift


def population_stability_index(
    expected: Sequence[float], actual: Sequence[float], floor: float = 1e-4
) -> float | None:
    """PSI of two histograms over the same bins (counts or shares); None if one is empty."""
    e = np.asarray(expected, dtype=np.float64)
    a = np.asarray(actual, dtype=np.float64)
    if e.shape != a.shape or e.ndim != 1:
        raise ValueError(f"histograms must be 1-D and alike, got {e.shape} and {a.shape}")
    if e.sum() <= 0 or a.sum() <= 0:
        return None
    e = np.maximum(e / e.sum(), floor)
    a = np.maximum(a / a.sum(), floor)
    return float(np.sum((a - e) * np.log(a / e)))


def psi_band(value: float | None, moderate: float = 0.1, drift: float = 0.25) -> str:
    """``stable`` / ``moderate`` / ``drift`` by the usual PSI conventions (``n/a`` if None)."""
    if value is None:
        return "n/a"
    if value >= drift:
        return "drift"
    return "moderate" if value >= moderate else "stable"


@dataclass(frozen=True)
class FeatureDrift:
    feature: str
    psi: float | None
    band: str
    excluded: bool


def feature_drift(
    reference_histograms: Mapping[str, Any],
    rows: np.ndarray,
    feature_names: Sequence[str],
    config: DriftConfig,
) -> list[FeatureDrift]:
    """PSI of every feature: reference histogram vs ``rows`` ``(M, F)`` in the same bins."""
    edges, counts = reference_histograms.get("edges"), reference_histograms.get("counts")
    if not edges or not counts or len(rows) == 0:
        return []
    recent = bin_counts(np.asarray(rows, dtype=np.float64), edges)
    out = []
    for j, name in enumerate(feature_names):
        value = population_stability_index(counts[j], recent[j], config.psi_floor)
        out.append(
            FeatureDrift(
                feature=name,
                psi=value,
                band=psi_band(value, config.psi_moderate, config.psi_drift),
                excluded=name in config.exclude_features,
            )
        )
    return out


def recent_feature_rows(
    prices: pd.DataFrame,
    tickers: Sequence[str],
    as_of: str | pd.Timestamp,
    n_sessions: int,
    *,
    benchmark: str,
    feature_names: Sequence[str],
) -> tuple[np.ndarray, pd.Timestamp | None, pd.Timestamp | None]:
    """Feature rows ``(M, F)`` of ``tickers`` over the last ``n_sessions`` sessions to ``as_of``.

    One row per (ticker, session): the row a window ending that day closes on,
    which is what the reference histograms were built from.
    """
    day = pd.Timestamp(as_of).normalize()
    known = prices.loc[pd.to_datetime(prices["date"]) <= day]
    features = build_features(known, benchmark=benchmark)
    wanted = calendar.previous_sessions(day, n_sessions)
    dates = features.index.get_level_values("date")
    keep = dates.isin(wanted) & features.index.get_level_values("ticker").isin(list(tickers))
    chosen = features.loc[keep, list(feature_names)]
    if chosen.empty:
        return np.empty((0, len(feature_names))), None, None
    used = chosen.index.get_level_values("date")
    return chosen.to_numpy(dtype=np.float64), used.min(), used.max()


# --------------------------------------------------------------------------- predictions


@dataclass(frozen=True)
class PredictionDrift:
    """Where the model's calls sit now, beside where they sat on its reference period."""

    n: int
    start: str | None
    end: str | None
    mean_p_up: float | None
    bullish_share: float | None
    reference_mean_p_up: float | None
    reference_bullish_share: float | None
    mean_p_up_shift: float | None
    bullish_share_shift: float | None


def _prediction_drift(
    made: pd.DataFrame, n_sessions: int, reference: Mapping[str, Any]
) -> PredictionDrift:
    days = np.sort(pd.unique(made["as_of_date"]))[-n_sessions:]
    recent = made.loc[made["as_of_date"].isin(days)]
    mean_p = float(recent["prob_up"].mean()) if len(recent) else None
    share = float((recent["predicted_class"] == 1).mean()) if len(recent) else None
    ref_mean, ref_share = reference.get("mean_p_up"), reference.get("bullish_share")
    return PredictionDrift(
        n=len(recent),
        start=_day(days[0]) if len(days) else None,
        end=_day(days[-1]) if len(days) else None,
        mean_p_up=mean_p,
        bullish_share=share,
        reference_mean_p_up=ref_mean,
        reference_bullish_share=ref_share,
        mean_p_up_shift=None if mean_p is None or ref_mean is None else mean_p - ref_mean,
        bullish_share_shift=None if share is None or ref_share is None else share - ref_share,
    )


# --------------------------------------------------------------------------- report


@dataclass(frozen=True)
class DriftReport:
    """Everything one evaluation found, the decision and the rule(s) behind it."""

    model_version: str
    model_sha256: str
    as_of: str
    config: DriftConfig
    n_predictions: int
    """Predictions of this version made on or before ``as_of`` (loaded for the evaluation)."""
    n_resolved: int
    """Of those, resolved by ``as_of`` (any age); the window's count is ``metrics["n"]``."""
    n_pending: int
    """Of those, horizon not passed by ``as_of``: never counted in any metric."""
    window_start: str | None
    window_end: str | None
    window_sessions: int
    metrics: dict[str, Any]
    reference: dict[str, Any]
    accuracy_test: AccuracyTest
    data_window_start: str | None
    data_window_end: str | None
    n_feature_rows: int
    features: list[FeatureDrift]
    share_drifted: float | None
    prediction_drift: PredictionDrift
    decision: str
    rules_fired: list[str]
    rule: str
    by_session: list[dict[str, Any]] = field(default_factory=list)
    reliability: list[dict[str, Any]] = field(default_factory=list)

    @property
    def drifted_features(self) -> list[str]:
        """Features (not excluded) at or above the drift PSI, most drifted first."""
        drifted = [f for f in self.features if not f.excluded and f.band == "drift"]
        return [f.feature for f in sorted(drifted, key=lambda f: -(f.psi or 0.0))]

    def evidence(self) -> dict[str, Any]:
        """The compact facts behind the decision: the drift event's payload."""
        test = self.accuracy_test
        return json_safe(
            {
                "model_version": self.model_version,
                "model_sha256": self.model_sha256,
                "as_of": self.as_of,
                "decision": self.decision,
                "rules_fired": self.rules_fired,
                "rule": self.rule,
                "window": {"start": self.window_start, "end": self.window_end},
                "n_resolved": test.n,
                "n_pending": self.n_pending,
                "accuracy": test.accuracy,
                "reference_accuracy": test.reference_accuracy,
                "p_value": test.p_value,
                "alpha": test.alpha,
                "share_drifted": self.share_drifted,
                "drifted_share_threshold": self.config.drifted_share_threshold,
                "drifted_features": self.drifted_features[:10],
                "mean_p_up": self.prediction_drift.mean_p_up,
                "bullish_share": self.prediction_drift.bullish_share,
            }
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types (non-finite floats become None)."""
        data = asdict(self)
        data["config"] = self.config.model_dump()
        data["drifted_features"] = self.drifted_features
        return json_safe(data)

    def to_markdown(self) -> str:
        return render_markdown(self)

    def psi_table(self) -> list[dict[str, Any]]:
        """Rows for a table artifact, most drifted first."""
        ordered = sorted(self.features, key=lambda f: -(f.psi if f.psi is not None else -1.0))
        return [
            {
                "feature": f.feature,
                "psi": None if f.psi is None else round(f.psi, 4),
                "band": f.band,
                "counted": not f.excluded,
            }
            for f in ordered
        ]

    def plots(self) -> dict[str, bytes]:
        """PNG bytes of the three plots, by file name."""
        return {
            "accuracy_over_time.png": plot_accuracy_over_time(self),
            "calibration.png": plot_calibration(self),
            "psi.png": plot_psi(self),
        }

    def save_plots(self, directory: str | Path) -> list[Path]:
        """Write the plots as PNG files; returns their paths."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        paths = []
        for name, data in self.plots().items():
            (out / name).write_bytes(data)
            paths.append(out / name)
        return paths


def build_report(
    predictions: pd.DataFrame,
    prices: pd.DataFrame,
    model: ModelReference,
    as_of: str | pd.Timestamp,
    *,
    benchmark: str,
    config: DriftConfig | None = None,
    tickers: Sequence[str] | None = None,
) -> DriftReport:
    """Evaluate ``model`` as of ``as_of`` from its stored predictions and the prices.

    ``predictions`` should hold this model version's rows only (others are
    dropped). ``tickers`` chooses the population for data drift; default: the
    tickers it made predictions for.
    """
    config = config or DriftConfig()
    day = pd.Timestamp(as_of).normalize()
    own = predictions.loc[predictions["model_version"] == model.version]
    outcomes = resolve_outcomes(own, prices, day)
    window = trailing_window(outcomes, config.window_sessions)
    metrics = _window_metrics(window)
    reference = model.figures()
    n_correct = int(window["correct"].sum()) if len(window) else 0
    test = accuracy_drop_test(
        n_correct,
        len(window),
        reference.get("accuracy"),
        alpha=config.alpha,
        min_samples=config.min_samples,
    )
    population = list(tickers) if tickers is not None else sorted(set(own["ticker"]))
    rows, data_start, data_end = recent_feature_rows(
        prices,
        population,
        day,
        config.window_sessions,
        benchmark=benchmark,
        feature_names=model.feature_names,
    )
    features = feature_drift(model.reference_histograms, rows, model.feature_names, config)
    share = _drifted_share(features)
    fired = _rules_fired(test, share, features, config)
    window_days = pd.unique(window["as_of_date"]) if len(window) else []
    return DriftReport(
        model_version=model.version,
        model_sha256=model.sha256,
        as_of=_day(day),
        config=config,
        n_predictions=len(outcomes),
        n_resolved=int(outcomes["resolved"].sum()),
        n_pending=int((~outcomes["resolved"]).sum()),
        window_start=_day(min(window_days)) if len(window_days) else None,
        window_end=_day(max(window_days)) if len(window_days) else None,
        window_sessions=len(window_days),
        metrics=metrics,
        reference=reference,
        accuracy_test=test,
        data_window_start=_day(data_start) if data_start is not None else None,
        data_window_end=_day(data_end) if data_end is not None else None,
        n_feature_rows=len(rows),
        features=features,
        share_drifted=share,
        prediction_drift=_prediction_drift(outcomes, config.window_sessions, reference),
        decision=DRIFT if fired else NO_DRIFT,
        rules_fired=[name for name, _text in fired],
        rule=_rule_text(fired, test, share, features, config),
        by_session=_by_session(window),
        reliability=_reliability(window),
    )


def _drifted_share(features: Sequence[FeatureDrift]) -> float | None:
    counted = [f for f in features if not f.excluded and f.psi is not None]
    if not counted:
        return None
    return sum(f.band == "drift" for f in counted) / len(counted)


def _share_text(share: float | None, features: Sequence[FeatureDrift], config: DriftConfig) -> str:
    if share is None:
        return "data drift not measured (no reference histograms or no recent feature rows)"
    counted = [f for f in features if not f.excluded and f.psi is not None]
    drifted = sum(f.band == "drift" for f in counted)
    return (
        f"{drifted} of {len(counted)} features ({_pct(share)}) have PSI >= {config.psi_drift:g}, "
        f"threshold {_pct(config.drifted_share_threshold)}"
    )


def _rules_fired(
    test: AccuracyTest,
    share: float | None,
    features: Sequence[FeatureDrift],
    config: DriftConfig,
) -> list[tuple[str, str]]:
    fired = []
    if test.rejected:
        fired.append(
            (
                "accuracy",
                f"accuracy {_pct(test.accuracy)} over {test.n} resolved predictions is "
                f"significantly below the reference {_pct(test.reference_accuracy)} "
                f"({test.note})",
            )
        )
    if share is not None and share >= config.drifted_share_threshold:
        fired.append(("data", _share_text(share, features, config)))
    return fired


def _rule_text(
    fired: Sequence[tuple[str, str]],
    test: AccuracyTest,
    share: float | None,
    features: Sequence[FeatureDrift],
    config: DriftConfig,
) -> str:
    if fired:
        return "; ".join(f"{name}: {text}" for name, text in fired)
    return (
        f"no rule fired: accuracy {_pct(test.accuracy)} vs reference "
        f"{_pct(test.reference_accuracy)} ({test.note}); {_share_text(share, features, config)}"
    )


def _by_session(window: pd.DataFrame) -> list[dict[str, Any]]:
    if window.empty:
        return []
    grouped = window.groupby("as_of_date")["correct"].agg(["mean", "size"]).sort_index()
    return [
        {"as_of_date": _day(day), "accuracy": float(row["mean"]), "n": int(row["size"])}
        for day, row in grouped.iterrows()
    ]


def _reliability(window: pd.DataFrame) -> list[dict[str, Any]]:
    if window.empty:
        return []
    bins = reliability_table(
        window["outcome"].to_numpy(dtype=np.int64), window["prob_up"].to_numpy(dtype=np.float64)
    )
    return [asdict(b) for b in bins]


# --------------------------------------------------------------------------- markdown


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100.0 * x:.1f}%"


def _num(x: float | None, digits: int = 3) -> str:
    return "—" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def _p(p: float) -> str:
    return f"{p:.2g}" if p < 0.001 else f"{p:.3f}"


def _day(value: Any) -> str:
    return str(pd.Timestamp(value).date())


def _signed(x: float | None) -> str:
    return "—" if x is None else f"{x:+.3f}"


def render_markdown(report: DriftReport) -> str:
    """The verdict first, then the numbers behind it, then the caveats."""
    m, ref, test, pdrift = (
        report.metrics,
        report.reference,
        report.accuracy_test,
        report.prediction_drift,
    )
    verdict = "DRIFT" if report.decision == DRIFT else "no drift"
    rows = [
        f"| {name} | {_num(m.get(key))} | {_num(ref.get(key))} |"
        for name, key in (
            ("accuracy", "accuracy"),
            ("ROC AUC", "roc_auc"),
            ("Brier", "brier"),
            ("log loss", "log_loss"),
        )
    ]
    top = report.psi_table()[:10]
    psi_rows = [
        f"| {r['feature']} | {_num(r['psi'])} | {r['band'] if r['counted'] else 'not counted'} |"
        for r in top
    ]
    parts = [
        f"# Drift evaluation: {report.model_version} as of {report.as_of}: **{verdict}**",
        "",
        f"**Rule:** {report.rule}",
        "",
        f"- Model `{report.model_version}` (sha256 `{report.model_sha256[:16]}…`)",
        f"- Performance window: {report.window_sessions} sessions "
        f"{report.window_start or '—'}..{report.window_end or '—'}, "
        f"{m.get('n', 0)} resolved predictions; {report.n_pending} predictions still pending "
        "(horizon not passed, never counted)",
        f"- Data window: {report.data_window_start or '—'}..{report.data_window_end or '—'}, "
        f"{report.n_feature_rows} feature rows",
        "",
        "## Performance vs reference",
        "",
        f"Reference: the checkpoint's held-out evaluation ({ref.get('period') or 'period n/a'}, "
        f"n={ref.get('n') or 'n/a'}).",
        "",
        "| metric | trailing window | reference |",
        "|---|---|---|",
        *rows,
        "",
        f"Accuracy test (H0: accuracy >= reference): {test.n_correct} of {test.n} correct; "
        f"{test.note}.",
        "",
        "## Data drift (PSI per feature, top 10)",
        "",
        _share_text(report.share_drifted, report.features, report.config) + ".",
        "",
        "| feature | PSI | band |",
        "|---|---|---|",
        *psi_rows,
        "",
        "## Prediction drift",
        "",
        f"- mean P(up): {_num(pdrift.mean_p_up)} (reference {_num(pdrift.reference_mean_p_up)}, "
        f"shift {_signed(pdrift.mean_p_up_shift)})",
        f"- bullish calls: {_pct(pdrift.bullish_share)} (reference "
        f"{_pct(pdrift.reference_bullish_share)}, shift {_signed(pdrift.bullish_share_shift)})",
        f"- over {pdrift.n} predictions, {pdrift.start or '—'}..{pdrift.end or '—'}",
        "",
        "## Caveats",
        "",
        "- Neighbouring predictions share most of their horizon and the whole market, so they "
        "are not independent: the binomial p-value is optimistic (too small).",
        "- PSI on a short window of autocorrelated features is large even in quiet markets; "
        "the data rule therefore needs a high share of drifted features.",
        "",
    ]
    return "\n".join(parts)


# --------------------------------------------------------------------------- plots


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def _empty(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes)
    ax.set_axis_off()


def plot_accuracy_over_time(report: DriftReport) -> bytes:
    """Accuracy per session and its 10-session mean, with the reference accuracy line."""
    fig = new_figure(9.0, 4.5)
    ax = fig.subplots()
    if not report.by_session:
        _empty(ax, "no resolved predictions in the window")
        return _png(fig)
    frame = pd.DataFrame(report.by_session)
    x = pd.to_datetime(frame["as_of_date"]).to_numpy()
    ax.scatter(x, frame["accuracy"], s=8 + 4 * frame["n"], alpha=0.4, label="per session")
    rolling = frame["accuracy"].rolling(10, min_periods=1).mean()
    ax.plot(x, rolling, linewidth=2.0, label="10-session mean")
    reference = report.reference.get("accuracy")
    if reference is not None:
        ax.axhline(reference, color="black", linestyle="--", label=f"reference {_pct(reference)}")
    ax.set(ylim=(-0.02, 1.02), xlabel="as-of date", ylabel="accuracy")
    ax.set_title(f"{report.model_version}: accuracy over the trailing window ({report.decision})")
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    return _png(fig)


def plot_calibration(report: DriftReport) -> bytes:
    """Reliability diagram of the trailing window, with the diagonal."""
    fig = new_figure(6.0, 6.0)
    ax = fig.subplots()
    filled = [b for b in report.reliability if b["count"]]
    if not filled:
        _empty(ax, "no resolved predictions in the window")
        return _png(fig)
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
    ax.plot(
        [b["mean_predicted"] for b in filled],
        [b["observed_frequency"] for b in filled],
        marker="o",
        label=report.model_version,
    )
    for b in filled:
        ax.annotate(
            f"n={b['count']}",
            (b["mean_predicted"], b["observed_frequency"]),
            textcoords="offset points",
            xytext=(4, -12),
            fontsize=8,
        )
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="predicted P(up)", ylabel="observed share bullish")
    ax.set_title(f"Calibration, {report.window_start}..{report.window_end}")
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    return _png(fig)


def plot_psi(report: DriftReport) -> bytes:
    """PSI per feature (bars coloured by band) with the 0.1 and 0.25 lines."""
    rows = [r for r in report.psi_table() if r["psi"] is not None]
    fig = new_figure(8.0, max(4.0, 0.18 * len(rows) + 1.5))
    ax = fig.subplots()
    if not rows:
        _empty(ax, "no PSI: no reference histograms or no recent rows")
        return _png(fig)
    colours = {"stable": "tab:green", "moderate": "tab:orange", "drift": "tab:red"}
    rows = rows[::-1]
    ax.barh(
        [r["feature"] + ("" if r["counted"] else " (excl.)") for r in rows],
        [r["psi"] for r in rows],
        color=[colours.get(r["band"], "grey") if r["counted"] else "lightgrey" for r in rows],
    )
    cfg = report.config
    ax.axvline(cfg.psi_moderate, color="tab:orange", linestyle=":", label=f"{cfg.psi_moderate:g}")
    ax.axvline(cfg.psi_drift, color="tab:red", linestyle="--", label=f"{cfg.psi_drift:g}")
    ax.set_xscale("symlog", linthresh=0.1)
    ax.tick_params(axis="y", labelsize=7)
    ax.set(xlabel="PSI (symlog scale)")
    ax.set_title(f"PSI per feature; drifted share {_pct(report.share_drifted)}")
    ax.legend(loc="lower right", fontsize=8)
    return _png(fig)
