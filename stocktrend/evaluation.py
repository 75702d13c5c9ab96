"""Honest, out-of-sample evaluation of trend predictions next to baselines.

The seed project reported one number (79.5% accuracy) with nothing beside it,
on a test set that leaked training information. A bare accuracy says nothing
about skill: on a trending ticker "always predict up" scores well too. So an
evaluation here always shows, on exactly the same samples,

* the model's metrics (discrimination, calibration, per-class quality),
* the same core metrics for simple baselines (majority class, momentum,
  logistic regression on the last day's features),
* significance tests of the model against the best baseline and against the
  majority rate, phrased in words so that "not significantly better" is hard
  to overlook,
* breakdowns per ticker and per year, because one good period or one easy
  ticker can carry a pooled number.

Everything here is a plain function of arrays; nothing is fitted or read from
disk except by the explicit baseline helpers. Plotting imports matplotlib only
when called and draws on a private ``Figure`` with the Agg canvas, so importing
this module never changes global matplotlib state.

Conventions: class 0 is bearish ("Bajista"), class 1 is bullish ("Alcista");
the predicted class is bullish when ``P(up) > threshold``, which matches an
argmax over two softmax outputs at the default threshold 0.5 (ties go to
class 0, as ``argmax`` does).

Caveat, stated in every Markdown report: consecutive samples of one ticker
with an h-session horizon share most of their label period, so samples are
not independent. The exact tests below assume independence; their p-values
are therefore optimistic (too small), never conservative.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import stats

from stocktrend import CLASS_NAMES, SEED_CLASS_NAMES
from stocktrend.plotting import new_figure

if TYPE_CHECKING:
    pass

PROBA_CLIP = 1e-7
"""Log loss clips probabilities to ``[PROBA_CLIP, 1 - PROBA_CLIP]`` so a hard 0/1 miss is finite."""

N_RELIABILITY_BINS = 10
N_CONFIDENCE_GROUPS = 10
MAJORITY_BASELINE = "majority"
"""Baseline name whose accuracy defines the majority rate of the binomial test, when present."""

_MAJORITY_FROM_BASELINE = "accuracy of the 'majority' baseline on these samples"
_MAJORITY_FROM_SAMPLES = "share of the most frequent class among these samples"
_LOG_LOSS_NOTE = (
    "Baselines that output hard 0/1 calls are scored as probabilities 0 and 1 (clipped),"
    " so their log loss is large by construction."
)


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class ClassMetrics:
    """Precision, recall and F1 of one class; ``None`` where the ratio is 0/0."""

    label: str
    seed_label: str
    precision: float | None
    recall: float | None
    f1: float | None
    support: int


@dataclass(frozen=True)
class CoreMetrics:
    """Metrics computed identically for the model and every baseline, so they compare 1:1."""

    n: int
    accuracy: float
    balanced_accuracy: float
    per_class: tuple[ClassMetrics, ClassMetrics]
    confusion_matrix: tuple[tuple[int, int], tuple[int, int]]
    """Rows are the actual class, columns the predicted class (0 bearish, 1 bullish)."""
    roc_auc: float | None
    """``None`` when only one class is present: the ranking question is then undefined."""
    log_loss: float
    brier: float


@dataclass(frozen=True)
class ReliabilityBin:
    """One equal-width bin of P(up); mean and frequency are ``None`` for an empty bin."""

    lower: float
    upper: float
    count: int
    mean_predicted: float | None
    observed_frequency: float | None


@dataclass(frozen=True)
class ConfidenceGroup:
    """One rank decile of confidence ``max(p, 1 - p)``; decile 1 is the least confident."""

    decile: int
    count: int
    min_confidence: float
    mean_confidence: float
    accuracy: float


@dataclass(frozen=True)
class InformationCoefficient:
    """Spearman rank correlation of P(up) with the realised forward return."""

    rho: float | None
    p_value: float | None
    n: int


@dataclass(frozen=True)
class GroupMetrics:
    """Accuracy within one ticker or one year, with each baseline's accuracy beside it."""

    group: str
    n: int
    accuracy: float
    base_rate: float
    """Share of class 1 (bullish) among the group's samples."""
    baseline_accuracy: dict[str, float]


@dataclass(frozen=True)
class McNemarResult:
    """Exact McNemar test of the model against one baseline on the same samples.

    ``b``: samples the model gets right and the baseline wrong; ``c``: the reverse.
    Under H0 (equal accuracy) ``b ~ Binomial(b + c, 0.5)``; ``statistic`` is ``b``.
    """

    test: str
    baseline: str
    baseline_accuracy: float
    b: int
    c: int
    statistic: int
    p_value: float
    alternative: str


@dataclass(frozen=True)
class BinomialResult:
    """Exact binomial test of the number of correct predictions against a null accuracy."""

    test: str
    statistic: int
    """Number of correct predictions."""
    n: int
    null_rate: float
    null_rate_source: str
    p_value: float
    alternative: str


@dataclass(frozen=True)
class EvaluationSamples:
    """The aligned inputs a report was computed from; kept for plots, not serialised."""

    y_true: np.ndarray
    p_up: np.ndarray
    forward_returns: np.ndarray
    ticker: np.ndarray
    as_of_date: np.ndarray
    baselines: dict[str, np.ndarray]


@dataclass(frozen=True)
class Report:
    """Everything one evaluation found; build it with :func:`evaluate`."""

    name: str
    n_samples: int
    n_tickers: int
    period_start: str
    period_end: str
    threshold: float
    alpha: float
    majority_rate: float
    majority_rate_source: str
    model: CoreMetrics
    baselines: dict[str, CoreMetrics]
    reliability: list[ReliabilityBin]
    confidence_deciles: list[ConfidenceGroup]
    spearman_ic: InformationCoefficient
    mcnemar: McNemarResult | None
    binomial_vs_majority: BinomialResult
    by_ticker: list[GroupMetrics]
    by_year: list[GroupMetrics]
    samples: EvaluationSamples = field(repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types only (NaN and infinities become ``None``); ``samples`` is left out."""
        raw: dict[str, Any] = {
            "name": self.name,
            "n_samples": self.n_samples,
            "n_tickers": self.n_tickers,
            "period": {"start": self.period_start, "end": self.period_end},
            "threshold": self.threshold,
            "alpha": self.alpha,
            "majority_rate": self.majority_rate,
            "majority_rate_source": self.majority_rate_source,
            "model": asdict(self.model),
            "baselines": {name: asdict(m) for name, m in self.baselines.items()},
            "reliability": [asdict(b) for b in self.reliability],
            "confidence_deciles": [asdict(g) for g in self.confidence_deciles],
            "spearman_ic": asdict(self.spearman_ic),
            "significance": {
                "mcnemar": None if self.mcnemar is None else asdict(self.mcnemar),
                "binomial_vs_majority": asdict(self.binomial_vs_majority),
            },
            "by_ticker": [asdict(g) for g in self.by_ticker],
            "by_year": [asdict(g) for g in self.by_year],
        }
        return json_safe(raw)

    def to_json(self, path: str | Path) -> Path:
        """Write :meth:`to_dict` as strict JSON (``allow_nan=False``); returns the path."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(self.to_dict(), indent=2, allow_nan=False, ensure_ascii=False)
        target.write_text(text + "\n", encoding="utf-8")
        return target

    def to_markdown(self) -> str:
        """A human-readable report; see :func:`render_markdown`."""
        return render_markdown(self)

    def save_plots(self, directory: str | Path) -> list[Path]:
        """Write ``calibration.png`` and ``accuracy_over_time.png``; returns their paths."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        return [
            plot_calibration(self, out / "calibration.png"),
            plot_accuracy_over_time(self, out / "accuracy_over_time.png"),
        ]


# --------------------------------------------------------------------------- validation


def _as_labels(y_true: ArrayLike) -> np.ndarray:
    """Labels as int64 0/1; NaN or other values are errors, not something to coerce."""
    raw = np.asarray(y_true)
    if raw.ndim != 1:
        raise ValueError(f"y_true must be 1-D, got shape {raw.shape}")
    if raw.dtype.kind == "f" and np.isnan(raw).any():
        raise ValueError("y_true contains NaN labels")
    if raw.dtype.kind not in "biuf":
        raise ValueError(f"y_true must be numeric 0/1, got dtype {raw.dtype}")
    if not np.isin(raw, (0, 1)).all():
        raise ValueError("y_true must contain only 0 (bearish) and 1 (bullish)")
    return raw.astype(np.int64)


def _as_probabilities(p: ArrayLike, what: str) -> np.ndarray:
    """P(up) as float64 in [0, 1]; 0/1 predictions are valid (degenerate) probabilities."""
    arr = np.asarray(p, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{what} must be 1-D, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{what} contains NaN or infinite values")
    if ((arr < 0.0) | (arr > 1.0)).any():
        raise ValueError(f"{what} must lie in [0, 1]")
    return arr


def _check_length(n: int, length: int, what: str) -> None:
    if length != n:
        raise ValueError(f"{what} has {length} rows but y_true has {n}")


def _validate_index(index: pd.DataFrame, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(ticker, as_of_date)`` arrays; dates as datetime64[ns] without NaT."""
    missing = {"ticker", "as_of_date"} - set(index.columns)
    if missing:
        raise ValueError(f"index lacks columns {sorted(missing)}")
    _check_length(n, len(index), "index")
    stamps = pd.to_datetime(index["as_of_date"])
    if stamps.dt.tz is not None:  # keep the local calendar date, not its UTC instant
        stamps = stamps.dt.tz_localize(None)
    dates = stamps.to_numpy(dtype="datetime64[ns]")
    if np.isnat(dates).any():
        raise ValueError("index.as_of_date contains missing dates")
    tickers = index["ticker"].astype(str).to_numpy()
    return tickers, dates


# --------------------------------------------------------------------------- core metrics


def predict_class(p_up: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Bullish (1) where ``P(up) > threshold``: a tie goes to bearish, like argmax."""
    return (np.asarray(p_up) > threshold).astype(np.int64)


def confusion_matrix_2x2(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Counts with rows = actual and columns = predicted class, always 2x2."""
    return np.bincount(2 * y_true + y_pred, minlength=4).reshape(2, 2)


def _ratio(num: float, den: float) -> float | None:
    return None if den == 0 else float(num) / float(den)


def _class_metrics(cm: np.ndarray, cls: int) -> ClassMetrics:
    """From the confusion matrix, so every class is treated the same way (no positive class)."""
    tp = int(cm[cls, cls])
    fn = int(cm[cls].sum()) - tp
    fp = int(cm[:, cls].sum()) - tp
    return ClassMetrics(
        label=CLASS_NAMES[cls],
        seed_label=SEED_CLASS_NAMES[cls],
        precision=_ratio(tp, tp + fp),
        recall=_ratio(tp, tp + fn),
        f1=_ratio(2 * tp, 2 * tp + fp + fn),
        support=tp + fn,
    )


def log_loss(y_true: np.ndarray, p_up: np.ndarray) -> float:
    """Mean binary cross-entropy with probabilities clipped to ``[1e-7, 1 - 1e-7]``."""
    p = np.clip(p_up, PROBA_CLIP, 1.0 - PROBA_CLIP)
    return float(-np.mean(y_true * np.log(p) + (1 - y_true) * np.log1p(-p)))


def brier_score(y_true: np.ndarray, p_up: np.ndarray) -> float:
    """Mean squared error of P(up) against the 0/1 outcome."""
    return float(np.mean((p_up - y_true) ** 2))


def roc_auc(y_true: np.ndarray, p_up: np.ndarray) -> float | None:
    """Probability that a random bullish sample outranks a random bearish one (ties count 1/2).

    Computed from average ranks (Mann-Whitney U), which handles ties exactly;
    ``None`` when a class is absent because the question has no answer then.
    """
    n_pos = int(y_true.sum())
    n_neg = len(y_true) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = stats.rankdata(p_up)
    u = ranks[y_true == 1].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def core_metrics(y_true: np.ndarray, p_up: np.ndarray, threshold: float = 0.5) -> CoreMetrics:
    """The metrics shared by model and baselines; inputs must already be validated arrays."""
    y_pred = predict_class(p_up, threshold)
    cm = confusion_matrix_2x2(y_true, y_pred)
    per_class = (_class_metrics(cm, 0), _class_metrics(cm, 1))
    recalls = [c.recall for c in per_class if c.recall is not None]
    return CoreMetrics(
        n=len(y_true),
        accuracy=float(np.mean(y_pred == y_true)),
        balanced_accuracy=float(np.mean(recalls)),
        per_class=per_class,
        confusion_matrix=((int(cm[0, 0]), int(cm[0, 1])), (int(cm[1, 0]), int(cm[1, 1]))),
        roc_auc=roc_auc(y_true, p_up),
        log_loss=log_loss(y_true, p_up),
        brier=brier_score(y_true, p_up),
    )


# --------------------------------------------------------------------------- calibration


def reliability_table(
    y_true: np.ndarray, p_up: np.ndarray, n_bins: int = N_RELIABILITY_BINS
) -> list[ReliabilityBin]:
    """Equal-width bins of P(up) on [0, 1]; the last bin includes 1.0. Empty bins are kept.

    Keeping empty bins makes the table shape fixed, so reports line up and a
    model that never leaves [0.45, 0.55] is visible as eight empty rows.
    """
    idx = np.clip(np.floor(p_up * n_bins).astype(np.int64), 0, n_bins - 1)
    rows = []
    for b in range(n_bins):
        mask = idx == b
        count = int(mask.sum())
        rows.append(
            ReliabilityBin(
                lower=b / n_bins,
                upper=(b + 1) / n_bins,
                count=count,
                mean_predicted=float(p_up[mask].mean()) if count else None,
                observed_frequency=float(y_true[mask].mean()) if count else None,
            )
        )
    return rows


def confidence_deciles(
    y_true: np.ndarray,
    p_up: np.ndarray,
    threshold: float = 0.5,
    n_groups: int = N_CONFIDENCE_GROUPS,
) -> list[ConfidenceGroup]:
    """Hit rate by rank decile of confidence ``max(p, 1 - p)``, least confident first.

    Deciles are by rank (a stable sort, then ``n_groups`` near-equal slices), not
    by value, so every group holds about N/10 samples even when the model's
    probabilities crowd around 0.5. With fewer than 10 samples, empty groups are
    dropped.
    """
    confidence = np.maximum(p_up, 1.0 - p_up)
    correct = predict_class(p_up, threshold) == y_true
    order = np.argsort(confidence, kind="stable")
    groups = []
    for i, members in enumerate(np.array_split(order, n_groups), start=1):
        if len(members) == 0:
            continue
        groups.append(
            ConfidenceGroup(
                decile=i,
                count=len(members),
                min_confidence=float(confidence[members].min()),
                mean_confidence=float(confidence[members].mean()),
                accuracy=float(correct[members].mean()),
            )
        )
    return groups


def spearman_ic(p_up: np.ndarray, forward_returns: np.ndarray) -> InformationCoefficient:
    """Spearman IC over the pairs with a finite forward return.

    A constant input has no ranking to correlate, so rho is ``None`` there
    instead of scipy's NaN-with-warning.
    """
    ok = np.isfinite(forward_returns)
    p, r = p_up[ok], forward_returns[ok]
    n = int(ok.sum())
    if n < 3 or np.ptp(p) == 0 or np.ptp(r) == 0:
        return InformationCoefficient(rho=None, p_value=None, n=n)
    res = stats.spearmanr(p, r)
    return InformationCoefficient(rho=float(res.statistic), p_value=float(res.pvalue), n=n)


# --------------------------------------------------------------------------- breakdowns


def _group_breakdown(
    keys: np.ndarray,
    y_true: np.ndarray,
    correct: np.ndarray,
    baseline_correct: Mapping[str, np.ndarray],
) -> list[GroupMetrics]:
    """Per-key n, accuracy and base rate, keys in sorted order."""
    rows = []
    for key in sorted(set(keys.tolist())):
        mask = keys == key
        rows.append(
            GroupMetrics(
                group=str(key),
                n=int(mask.sum()),
                accuracy=float(correct[mask].mean()),
                base_rate=float(y_true[mask].mean()),
                baseline_accuracy={
                    name: float(c[mask].mean()) for name, c in baseline_correct.items()
                },
            )
        )
    return rows


# --------------------------------------------------------------------------- significance


def mcnemar_exact(model_correct: np.ndarray, other_correct: np.ndarray) -> tuple[int, int, float]:
    """Exact two-sided McNemar test: ``(b, c, p)`` from a binomial test on discordant pairs.

    Only samples where exactly one of the two is right carry information about
    which is better; with none of them (b + c = 0) the p-value is 1.
    """
    b = int(np.sum(model_correct & ~other_correct))
    c = int(np.sum(~model_correct & other_correct))
    if b + c == 0:
        return b, c, 1.0
    p = stats.binomtest(b, b + c, 0.5, alternative="two-sided").pvalue
    return b, c, float(p)


def _best_baseline(metrics: Mapping[str, CoreMetrics]) -> str | None:
    """Highest accuracy; ties go to the first in mapping order so the choice is reproducible."""
    best: str | None = None
    for name, m in metrics.items():
        if best is None or m.accuracy > metrics[best].accuracy:
            best = name
    return best


def _majority_rate(
    y_true: np.ndarray, baseline_metrics: Mapping[str, CoreMetrics]
) -> tuple[float, str]:
    """The null accuracy of the binomial test, and where it came from.

    Precisely: the accuracy that the ``"majority"`` baseline (majority class of
    the *training* labels, a constant) achieves on the evaluated samples. If no
    such baseline was given, the share of the most frequent class among the
    evaluated samples, which is the best any constant prediction could score
    and so a stricter null.
    """
    if MAJORITY_BASELINE in baseline_metrics:
        return baseline_metrics[MAJORITY_BASELINE].accuracy, _MAJORITY_FROM_BASELINE
    share_up = float(y_true.mean())
    return max(share_up, 1.0 - share_up), _MAJORITY_FROM_SAMPLES


def binomial_vs_rate(n_correct: int, n: int, rate: float) -> float:
    """One-sided exact binomial p-value of ``n_correct`` successes in ``n`` above ``rate``."""
    return float(stats.binomtest(n_correct, n, rate, alternative="greater").pvalue)


# --------------------------------------------------------------------------- evaluate


def evaluate(
    y_true: ArrayLike,
    p_up: ArrayLike,
    forward_returns: ArrayLike,
    index: pd.DataFrame,
    *,
    baselines: Mapping[str, ArrayLike] | None = None,
    threshold: float = 0.5,
    name: str = "model",
    alpha: float = 0.05,
) -> Report:
    """Score ``p_up`` against ``y_true`` next to each baseline on the very same samples.

    ``index`` (columns ``ticker``, ``as_of_date``) is aligned row by row with
    the arrays. ``baselines`` maps a name to P(up) or 0/1 predictions. Raises
    ``ValueError`` on empty input, length mismatches, NaN labels or
    probabilities outside [0, 1].
    """
    y = _as_labels(y_true)
    n = len(y)
    if n == 0:
        raise ValueError("cannot evaluate zero samples")
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    p = _as_probabilities(p_up, "p_up")
    _check_length(n, len(p), "p_up")
    fwd = np.asarray(forward_returns, dtype=np.float64)
    _check_length(n, len(fwd), "forward_returns")
    tickers, dates = _validate_index(index, n)
    base_p: dict[str, np.ndarray] = {}
    for bname, values in (baselines or {}).items():
        if bname == name:
            raise ValueError(f"baseline name {bname!r} clashes with the model name")
        base_p[bname] = _as_probabilities(values, f"baseline {bname!r}")
        _check_length(n, len(base_p[bname]), f"baseline {bname!r}")

    model = core_metrics(y, p, threshold)
    base_metrics = {k: core_metrics(y, v, threshold) for k, v in base_p.items()}
    correct = predict_class(p, threshold) == y
    base_correct = {k: predict_class(v, threshold) == y for k, v in base_p.items()}

    best = _best_baseline(base_metrics)
    mcnemar = None
    if best is not None:
        b, c, p_mc = mcnemar_exact(correct, base_correct[best])
        mcnemar = McNemarResult(
            test="McNemar exact (two-sided binomial test on discordant pairs)",
            baseline=best,
            baseline_accuracy=base_metrics[best].accuracy,
            b=b,
            c=c,
            statistic=b,
            p_value=p_mc,
            alternative="two-sided",
        )
    rate, source = _majority_rate(y, base_metrics)
    n_correct = int(correct.sum())
    binomial = BinomialResult(
        test="exact binomial test of accuracy against the majority rate",
        statistic=n_correct,
        n=n,
        null_rate=rate,
        null_rate_source=source,
        p_value=binomial_vs_rate(n_correct, n, rate),
        alternative="greater",
    )
    years = pd.DatetimeIndex(dates).year.astype(str).to_numpy()
    return Report(
        name=name,
        n_samples=n,
        n_tickers=len(set(tickers.tolist())),
        period_start=str(pd.Timestamp(dates.min()).date()),
        period_end=str(pd.Timestamp(dates.max()).date()),
        threshold=float(threshold),
        alpha=float(alpha),
        majority_rate=rate,
        majority_rate_source=source,
        model=model,
        baselines=base_metrics,
        reliability=reliability_table(y, p),
        confidence_deciles=confidence_deciles(y, p, threshold),
        spearman_ic=spearman_ic(p, fwd),
        mcnemar=mcnemar,
        binomial_vs_majority=binomial,
        by_ticker=_group_breakdown(tickers, y, correct, base_correct),
        by_year=_group_breakdown(years, y, correct, base_correct),
        samples=EvaluationSamples(
            y_true=y,
            p_up=p,
            forward_returns=fwd,
            ticker=tickers,
            as_of_date=dates,
            baselines=base_p,
        ),
    )


# --------------------------------------------------------------------------- baselines


def majority_baseline(y_train: ArrayLike, n: int) -> np.ndarray:
    """Constant P(up) of 1.0 or 0.0: the majority class of the *training* labels.

    Taken from training labels only, so it cannot peek at the evaluated period;
    an exact tie goes to bullish (the long-run drift of equities).
    """
    y = _as_labels(y_train)
    if len(y) == 0:
        raise ValueError("majority_baseline needs at least one training label")
    if n < 0:
        raise ValueError(f"n must be non-negative, got {n}")
    majority = 1.0 if 2 * int(y.sum()) >= len(y) else 0.0
    return np.full(n, majority, dtype=np.float64)


def momentum_baseline(past_returns: ArrayLike) -> np.ndarray:
    """P(up) = 1 where the past h-session return is positive, else 0 ("the trend continues").

    A missing past return is an error rather than a silent bearish call.
    """
    r = np.asarray(past_returns, dtype=np.float64)
    if not np.isfinite(r).all():
        raise ValueError("past_returns contains NaN or infinite values")
    return (r > 0.0).astype(np.float64)


def _last_step(X: ArrayLike, what: str) -> np.ndarray:
    """Rows ``(N, F)``; windows ``(N, T, F)`` are reduced to their last day."""
    arr = np.asarray(X, dtype=np.float64)
    if arr.ndim == 3:
        arr = arr[:, -1, :]
    if arr.ndim != 2:
        raise ValueError(f"{what} must be (N, F) or (N, T, F), got shape {np.shape(X)}")
    return arr


def logistic_baseline(
    X_train_last: ArrayLike,
    y_train: ArrayLike,
    X_eval_last: ArrayLike,
    seed: int = 0,
) -> np.ndarray:
    """P(up) from a standardised logistic regression on the last day's features.

    The scaler lives inside the pipeline, so its statistics come from the
    training rows only. It answers "does the deep model beat a linear read of
    the same features?". Windows ``(N, T, F)`` are accepted and cut to ``[:, -1]``.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    X_train = _last_step(X_train_last, "X_train_last")
    X_eval = _last_step(X_eval_last, "X_eval_last")
    y = _as_labels(y_train)
    if len(y) != len(X_train):
        raise ValueError(f"y_train has {len(y)} rows but X_train_last has {len(X_train)}")
    if len(np.unique(y)) < 2:
        raise ValueError("logistic_baseline needs both classes in y_train")
    if X_eval.shape[1] != X_train.shape[1]:
        raise ValueError(f"X_eval_last has {X_eval.shape[1]} features, expected {X_train.shape[1]}")
    pipe = Pipeline(
        [
            ("scale", StandardScaler()),
            ("logit", LogisticRegression(max_iter=1000, random_state=seed)),
        ]
    )
    pipe.fit(X_train, y)
    up_col = int(np.flatnonzero(pipe.classes_ == 1)[0])
    return pipe.predict_proba(X_eval)[:, up_col].astype(np.float64)


# --------------------------------------------------------------------------- markdown


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100.0 * x:.1f}%"


def _num(x: float | None, digits: int = 3) -> str:
    return "—" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def _pval(p: float) -> str:
    return f"{p:.2g}" if p < 0.001 else f"{p:.2f}" if p >= 0.01 else f"{p:.3f}"


def format_confusion_matrix(cm: ArrayLike) -> str:
    """The confusion matrix laid out exactly as the seed project printed it.

    Keeping the seed's layout (Spanish class names, per-row recall, overall
    accuracy) lets its 79.5% and ours be read side by side.
    """
    m = np.asarray(cm, dtype=np.int64)
    if m.shape != (2, 2):
        raise ValueError(f"confusion matrix must be 2x2, got shape {m.shape}")
    lines = [
        "Confusion Matrix:",
        f"{'':16}Predicted",
        f"{'Actual':<16}{SEED_CLASS_NAMES[0]}  {SEED_CLASS_NAMES[1]}",
    ]
    for cls in (0, 1):
        recall = _ratio(int(m[cls, cls]), int(m[cls].sum()))
        lines.append(
            f"{SEED_CLASS_NAMES[cls]:<16}{m[cls, 0]:>4}{m[cls, 1]:>9}      ← {_pct(recall)} recall"
        )
    total = int(m.sum())
    lines += ["", f"Overall Accuracy: {_pct(_ratio(int(np.trace(m)), total))}"]
    return "\n".join(lines)


def _md_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "| " + " | ".join(headers) + " |"
    rule = "|" + "|".join("---" for _ in headers) + "|"
    body = ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join([head, rule, *body])


def _headline_table(report: Report) -> str:
    entries = [(f"**{report.name}**", report.model)]
    entries += [(name, m) for name, m in report.baselines.items()]
    rows = [
        [
            label,
            _num(m.accuracy),
            _num(m.balanced_accuracy),
            _num(m.roc_auc),
            _num(m.log_loss),
            _num(m.brier),
        ]
        for label, m in entries
    ]
    return _md_table(["", "accuracy", "balanced acc", "ROC AUC", "log loss", "Brier"], rows)


def _per_class_table(metrics: CoreMetrics) -> str:
    rows = [
        [
            f"{c.label} ({c.seed_label})",
            _num(c.precision),
            _num(c.recall),
            _num(c.f1),
            str(c.support),
        ]
        for c in metrics.per_class
    ]
    return _md_table(["class", "precision", "recall", "F1", "support"], rows)


def _mcnemar_sentence(report: Report) -> str:
    mc = report.mcnemar
    if mc is None:
        return "No baseline was given, so the model was not compared with one."
    significant = mc.p_value < report.alpha
    if significant and mc.b > mc.c:
        verdict = "significantly better than"
    elif significant:
        verdict = "significantly worse than"
    else:
        verdict = "not significantly better than"
    return (
        f"{report.name} is {verdict} {mc.baseline}, the best baseline by accuracy "
        f"(McNemar p={_pval(mc.p_value)}; {report.name} right and {mc.baseline} wrong on "
        f"{mc.b} samples, the reverse on {mc.c})."
    )


def _binomial_sentence(report: Report) -> str:
    bt = report.binomial_vs_majority
    above = bt.p_value < report.alpha
    verdict = "significantly above" if above else "not significantly above"
    return (
        f"{report.name} accuracy {_pct(report.model.accuracy)} is {verdict} the majority rate "
        f"{_pct(bt.null_rate)} (one-sided exact binomial test p={_pval(bt.p_value)}; "
        f"majority rate = {bt.null_rate_source})."
    )


def _reliability_md(report: Report) -> str:
    rows = [
        [
            f"{b.lower:.1f}–{b.upper:.1f}",
            str(b.count),
            _num(b.mean_predicted),
            _num(b.observed_frequency),
        ]
        for b in report.reliability
    ]
    return _md_table(["P(up) bin", "count", "mean predicted", "observed frequency"], rows)


def _confidence_md(report: Report) -> str:
    rows = [
        [str(g.decile), str(g.count), _num(g.mean_confidence), _num(g.accuracy)]
        for g in report.confidence_deciles
    ]
    return _md_table(["decile", "count", "mean confidence", "accuracy"], rows)


def _group_md(groups: Sequence[GroupMetrics], label: str, report: Report) -> str:
    names = list(report.baselines)
    headers = [label, "n", "base rate (bullish)", f"{report.name} acc"]
    headers += [f"{b} acc" for b in names]
    rows = [
        [g.group, str(g.n), _num(g.base_rate), _num(g.accuracy)]
        + [_num(g.baseline_accuracy[b]) for b in names]
        for g in groups
    ]
    return _md_table(headers, rows)


def render_markdown(report: Report) -> str:
    """The report as Markdown: headline comparison first, detail tables after."""
    ic = report.spearman_ic
    ic_text = (
        "undefined (constant P(up) or returns)"
        if ic.rho is None
        else f"{ic.rho:.3f} (p={_pval(1.0 if ic.p_value is None else ic.p_value)}, n={ic.n})"
    )
    parts = [
        f"# Evaluation: {report.name}",
        "",
        f"- Samples: {report.n_samples} out-of-sample predictions on {report.n_tickers} "
        f"ticker(s), {report.period_start} to {report.period_end}",
        f"- Decision rule: bullish when P(up) > {report.threshold:g}",
        f"- Majority rate: {_pct(report.majority_rate)} ({report.majority_rate_source})",
        "",
        "## Model vs baselines (same samples)",
        "",
        _headline_table(report),
        "",
        _LOG_LOSS_NOTE if report.baselines else "No baselines were given.",
        "",
        "## Significance",
        "",
        f"- {_mcnemar_sentence(report)}",
        f"- {_binomial_sentence(report)}",
        f"- Significance level {report.alpha:g}. Overlapping forward windows make neighbouring "
        "samples dependent; both tests assume independence, so these p-values are optimistic.",
        "",
        f"## Confusion matrix ({report.name})",
        "",
        "```",
        format_confusion_matrix(report.model.confusion_matrix),
        "```",
        "",
        "## Per class",
        "",
        _per_class_table(report.model),
        "",
        "## Calibration (10 equal-width bins of P(up))",
        "",
        _reliability_md(report),
        "",
        "## Hit rate by confidence decile (1 = least confident)",
        "",
        _confidence_md(report),
        "",
        f"Spearman IC of P(up) with the realised forward return: {ic_text}",
        "",
        "## Per ticker",
        "",
        _group_md(report.by_ticker, "ticker", report),
        "",
        "## Per year",
        "",
        _group_md(report.by_year, "year", report),
        "",
    ]
    return "\n".join(parts)


# --------------------------------------------------------------------------- plots


def plot_calibration(report: Report, path: str | Path) -> Path:
    """Reliability diagram (with the diagonal) above a histogram of bin counts."""
    fig = new_figure(6.5, 7.0)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    filled = [b for b in report.reliability if b.count > 0]
    top.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
    top.plot(
        [b.mean_predicted for b in filled],
        [b.observed_frequency for b in filled],
        marker="o",
        color="tab:blue",
        label=report.name,
    )
    for b in filled:
        top.annotate(
            f"n={b.count}",
            (b.mean_predicted, b.observed_frequency),
            textcoords="offset points",
            xytext=(4, -12),
            fontsize=8,
            annotation_clip=False,
        )
    top.set(xlim=(0, 1), ylim=(0, 1), ylabel="Observed frequency of bullish")
    top.set_title(f"Calibration of {report.name} (n={report.n_samples})")
    top.legend(loc="upper left")
    top.grid(alpha=0.3)
    centers = [(b.lower + b.upper) / 2 for b in report.reliability]
    counts = [b.count for b in report.reliability]
    bars = bottom.bar(centers, counts, width=0.09, color="tab:blue", alpha=0.6)
    bottom.bar_label(bars, fontsize=8)
    bottom.set(xlabel="Predicted P(up)", ylabel="Samples per bin")
    bottom.margins(y=0.25)
    target = Path(path)
    fig.savefig(target)
    return target


def monthly_accuracy(report: Report) -> pd.DataFrame:
    """Accuracy per calendar month (rows) for the model and each baseline (columns)."""
    s = report.samples
    month = pd.DatetimeIndex(s.as_of_date).to_period("M").to_timestamp()
    hits = {report.name: predict_class(s.p_up, report.threshold) == s.y_true}
    for bname, bp in s.baselines.items():
        hits[bname] = predict_class(bp, report.threshold) == s.y_true
    frame = pd.DataFrame({k: v.astype(np.float64) for k, v in hits.items()})
    return frame.groupby(month.to_numpy()).mean().sort_index()


def plot_accuracy_over_time(report: Report, path: str | Path) -> Path:
    """Monthly accuracy of model and baselines, with the majority rate as a reference line."""
    table = monthly_accuracy(report)
    fig = new_figure(9.0, 4.5)
    ax = fig.subplots()
    x = table.index.to_numpy(dtype="datetime64[ns]")
    for i, col in enumerate(table.columns):
        is_model = i == 0
        ax.plot(
            x,
            table.iloc[:, i].to_numpy(),
            marker="o",
            markersize=4 if is_model else 3,
            linewidth=2.2 if is_model else 1.0,
            alpha=1.0 if is_model else 0.8,
            label=str(col),
        )
    ax.axhline(
        report.majority_rate,
        color="black",
        linestyle="--",
        linewidth=1.0,
        label=f"majority rate ({_pct(report.majority_rate)})",
    )
    ax.set(ylim=(0, 1), xlabel="Month of as-of date", ylabel="Accuracy")
    ax.set_title(f"Monthly accuracy: {report.name} vs baselines")
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    target = Path(path)
    fig.savefig(target)
    return target


# --------------------------------------------------------------------------- json


def json_safe(obj: Any) -> Any:
    """Plain JSON values for reports: numpy scalars and arrays, tuples, timestamps (ISO text);
    NaN and infinities become None (JSON has no spelling for them)."""
    if isinstance(obj, Mapping):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | np.ndarray):
        return [json_safe(v) for v in obj]
    if isinstance(obj, bool | np.bool_):
        return bool(obj)
    if isinstance(obj, int | np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        value = float(obj)
        return value if math.isfinite(value) else None
    if isinstance(obj, pd.Timestamp):
        return obj.isoformat()
    return obj
