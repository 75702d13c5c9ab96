"""Drift statistics and the promotion rule, against hand-computed values and scipy."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from stocktrend import calendar
from stocktrend.drift import (
    DRIFT,
    NO_DRIFT,
    DriftConfig,
    ModelReference,
    accuracy_drop_test,
    build_report,
    feature_drift,
    population_stability_index,
    psi_band,
    resolve_outcomes,
    trailing_window,
)
from stocktrend.features import FEATURE_NAMES, build_features
from stocktrend.finetune import (
    FineTuneConfig,
    challenger_version,
    decide_promotion,
    plan_periods,
)
from stocktrend.histograms import reference_histograms
from stocktrend.validation import validate_prices
from stocktrend.windows import make_labels

# -- PSI -----------------------------------------------------------------------------------------


def test_psi_matches_hand_computation() -> None:
    expected = [25, 25, 25, 25]
    actual = [10, 20, 30, 40]
    by_hand = (
        (0.1 - 0.25) * math.log(0.1 / 0.25)
        + (0.2 - 0.25) * math.log(0.2 / 0.25)
        + (0.3 - 0.25) * math.log(0.3 / 0.25)
        + (0.4 - 0.25) * math.log(0.4 / 0.25)
    )
    assert by_hand == pytest.approx(0.228218, abs=1e-6)
    assert population_stability_index(expected, actual) == pytest.approx(by_hand, rel=1e-12)
    # shares or counts give the same value; identical histograms give 0
    assert population_stability_index([0.25] * 4, [0.1, 0.2, 0.3, 0.4]) == pytest.approx(by_hand)
    assert population_stability_index([3, 5, 2], [30, 50, 20]) == pytest.approx(0.0, abs=1e-15)


def test_psi_floors_an_empty_bin() -> None:
    by_hand = 2 * (0.4 - 0.5) * math.log(0.4 / 0.5) + (0.2 - 1e-4) * math.log(0.2 / 1e-4)
    assert population_stability_index([50, 50, 0], [40, 40, 20]) == pytest.approx(by_hand)
    assert population_stability_index([50, 50, 0], [0, 0, 0]) is None
    with pytest.raises(ValueError, match="alike"):
        population_stability_index([1, 2], [1, 2, 3])


@pytest.mark.parametrize(
    ("value", "band"),
    [(0.0, "stable"), (0.0999, "stable"), (0.1, "moderate"), (0.2499, "moderate"), (0.25, "drift")],
)
def test_psi_bands_follow_the_conventions(value: float, band: str) -> None:
    assert psi_band(value) == band
    assert psi_band(None) == "n/a"


def test_feature_drift_uses_the_reference_bins() -> None:
    rng = np.random.default_rng(0)
    train = rng.normal(size=(5000, 3))
    reference = reference_histograms(train)
    config = DriftConfig(exclude_features=("c",))
    same = feature_drift(reference, rng.normal(size=(2000, 3)), ["a", "b", "c"], config)
    assert all(f.band == "stable" for f in same)
    shifted = rng.normal(size=(2000, 3)) + np.array([1.0, 0.0, 1.0])
    result = {f.feature: f for f in feature_drift(reference, shifted, ["a", "b", "c"], config)}
    assert result["a"].band == "drift" and result["b"].band == "stable"
    assert result["c"].band == "drift" and result["c"].excluded
    # the value is the PSI of the reference counts and the recent rows in the same bins
    edges = np.asarray(reference["edges"][0])
    recent = np.bincount(np.searchsorted(edges[1:-1], shifted[:, 0], side="right"), minlength=10)
    assert result["a"].psi == pytest.approx(
        population_stability_index(reference["counts"][0], recent)
    )


# -- accuracy test -------------------------------------------------------------------------------


def test_binomial_test_matches_hand_values_and_scipy() -> None:
    # P(X <= 2 | 10, 0.5) = (1 + 10 + 45) / 1024
    at_two = accuracy_drop_test(2, 10, 0.5, alpha=0.05, min_samples=10)
    assert at_two.p_value == pytest.approx(56 / 1024) and not at_two.rejected
    at_one = accuracy_drop_test(1, 10, 0.5, alpha=0.05, min_samples=10)
    assert at_one.p_value == pytest.approx(11 / 1024) and at_one.rejected
    for k, n, p0 in [(100, 240, 0.52), (131, 240, 0.52), (50, 100, 0.4597)]:
        test = accuracy_drop_test(k, n, p0, alpha=0.05, min_samples=100)
        assert test.p_value == pytest.approx(stats.binom.cdf(k, n, p0), rel=1e-9)
        assert test.accuracy == pytest.approx(k / n)


def test_binomial_test_needs_a_sample_and_a_reference() -> None:
    small = accuracy_drop_test(0, 50, 0.6, min_samples=100)
    assert small.p_value is None and not small.rejected and "fewer than" in small.note
    unknown = accuracy_drop_test(10, 200, None)
    assert unknown.p_value is None and not unknown.rejected and "no reference" in unknown.note


# -- McNemar and the promotion rule --------------------------------------------------------------


def _pairs(both: int, only_challenger: int, only_champion: int, neither: int):
    """Labels and P(up) for two models with the given agreement counts (all labels bullish)."""
    n = both + only_challenger + only_champion + neither
    y = np.ones(n, dtype=np.int64)
    champion = np.array(
        [0.6] * both + [0.4] * only_challenger + [0.6] * only_champion + [0.4] * neither
    )
    challenger = np.array(
        [0.6] * both + [0.6] * only_challenger + [0.4] * only_champion + [0.4] * neither
    )
    return y, champion, challenger


def test_mcnemar_in_the_decision_matches_hand_values() -> None:
    y, champion, challenger = _pairs(both=20, only_challenger=1, only_champion=9, neither=10)
    # the challenger is confidently right where it is right: better log loss, worse accuracy
    challenger = np.where(challenger > 0.5, 0.99, 0.45)
    decision = decide_promotion(y, champion, challenger, primary_metric="log_loss", margin=0.0)
    # two-sided exact: 2 * P(X <= 1 | 10, 0.5) = 2 * 11 / 1024
    assert decision.mcnemar["p_value"] == pytest.approx(22 / 1024)
    assert decision.mcnemar["challenger_only_correct"] == 1
    assert decision.mcnemar["champion_only_correct"] == 9
    assert decision.improvement > 0  # better on the primary metric ...
    assert not decision.promote  # ... but McNemar says it is worse
    assert "significantly worse" in decision.reason


def test_promotion_needs_the_margin() -> None:
    y, champion, challenger = _pairs(both=40, only_challenger=6, only_champion=4, neither=10)
    by_accuracy = decide_promotion(y, champion, challenger, primary_metric="accuracy")
    assert by_accuracy.improvement == pytest.approx(2 / 60)
    assert by_accuracy.promote and by_accuracy.reason.startswith("promoted")
    strict = decide_promotion(y, champion, challenger, primary_metric="accuracy", margin=0.05)
    assert not strict.promote and "below the margin" in strict.reason
    same = decide_promotion(y, champion, champion)
    assert not same.promote and same.improvement == 0


def test_plan_leaves_purge_gaps_between_parts() -> None:
    config = FineTuneConfig(train_sessions=100, val_sessions=20, holdout_sessions=30)
    plan = plan_periods(pd.Timestamp("2008-12-16"), 10, config)
    assert plan.holdout_end == pd.Timestamp("2008-12-16")
    assert len(calendar.sessions(plan.holdout_start, plan.holdout_end)) == 30
    assert len(calendar.sessions(plan.val_start, plan.val_end)) == 20
    assert len(calendar.sessions(plan.train_start, plan.train_end)) == 100
    # the last label of each part resolves before the next part's first as-of date
    assert calendar.session_offset(plan.train_end, 10) < plan.val_start
    assert calendar.session_offset(plan.val_end, 10) < plan.holdout_start


def test_challenger_names_are_unique_and_keep_the_root() -> None:
    day = pd.Timestamp("2008-12-16")
    assert challenger_version("v2.0", day, set()) == "v2.0-ft20081216"
    assert challenger_version("v2.0-ft20070102", day, {"v2.0-ft20081216"}) == "v2.0-ft20081216.2"


# -- outcomes ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def prices(sample_prices: pd.DataFrame) -> pd.DataFrame:
    keep = sample_prices["ticker"].isin(["AAPL", "MSFT", "^GSPC"])
    window = (sample_prices["date"] >= "2009-01-01") & (sample_prices["date"] <= "2011-06-30")
    clean, _ = validate_prices(sample_prices[keep & window].reset_index(drop=True))
    return clean


def _predictions(days: pd.DatetimeIndex, tickers: list[str], p_up: np.ndarray) -> pd.DataFrame:
    rows = [(d, t) for d in days for t in tickers]
    frame = pd.DataFrame(rows, columns=["as_of_date", "ticker"])
    frame["prob_up"] = p_up[: len(frame)]
    frame["predicted_class"] = (frame["prob_up"] > 0.5).astype(np.int64)
    frame["label"] = np.where(frame["predicted_class"] == 1, "bullish", "bearish")
    frame["horizon"] = 10
    frame["model_version"] = "m1"
    frame["model_sha256"] = "ab" * 32
    frame["flow_run_id"] = None
    frame["created_at"] = pd.Timestamp("2011-07-01", tz="UTC")
    return frame


def test_pending_predictions_are_never_counted(prices: pd.DataFrame) -> None:
    as_of = pd.Timestamp("2011-03-31")
    days = calendar.sessions("2011-02-01", "2011-05-31")  # some after as_of, some pending
    frame = _predictions(days, ["AAPL", "MSFT"], np.full(2 * len(days), 0.7))
    out = resolve_outcomes(frame, prices, as_of)
    assert out["as_of_date"].max() <= as_of  # predictions made after as_of are not there
    last_resolvable = calendar.session_offset(as_of, -10)
    resolved = out[out["resolved"]]
    assert resolved["as_of_date"].max() == last_resolvable
    pending = out[~out["resolved"]]
    assert len(pending) == 2 * 10 and pending["outcome"].isna().all()
    # prices exist after as_of, but they must not resolve anything
    assert (prices["date"] > as_of).any()
    window = trailing_window(out, 60)
    assert window["resolved"].all() and window["as_of_date"].max() == last_resolvable
    # outcomes agree with the training labels' definition
    labels = make_labels(prices, 10)
    keys = pd.MultiIndex.from_arrays([resolved["as_of_date"], resolved["ticker"]])
    np.testing.assert_array_equal(resolved["outcome"].to_numpy(), labels.reindex(keys).to_numpy())


def test_trailing_window_takes_the_last_sessions(prices: pd.DataFrame) -> None:
    days = calendar.sessions("2010-01-04", "2010-12-31")
    frame = _predictions(days, ["AAPL"], np.full(len(days), 0.4))
    window = trailing_window(resolve_outcomes(frame, prices, "2011-06-30"), 60)
    assert window["as_of_date"].nunique() == 60
    assert window["as_of_date"].max() == pd.Timestamp("2010-12-31")


# -- report and decision -------------------------------------------------------------------------


def _reference(prices: pd.DataFrame, accuracy: float) -> ModelReference:
    features = build_features(prices, benchmark="^GSPC")
    rows = features[features.index.get_level_values("ticker").isin(["AAPL", "MSFT"])]
    return ModelReference(
        version="m1",
        sha256="ab" * 32,
        feature_names=FEATURE_NAMES,
        horizon=10,
        reference_histograms=reference_histograms(rows.to_numpy()),
        metrics={
            "model": {
                "n": 1000,
                "accuracy": accuracy,
                "roc_auc": 0.55,
                "brier": 0.24,
                "log_loss": 0.69,
                "confusion_matrix": [[300, 200], [200, 300]],
            },
            "period": {"start": "2009-01-02", "end": "2010-12-31"},
        },
    )


@pytest.mark.parametrize(("reference_accuracy", "decision"), [(0.95, DRIFT), (0.05, NO_DRIFT)])
def test_accuracy_rule_decides(
    prices: pd.DataFrame, reference_accuracy: float, decision: str
) -> None:
    rng = np.random.default_rng(3)
    days = calendar.sessions("2010-06-01", "2011-06-30")
    frame = _predictions(days, ["AAPL", "MSFT"], rng.uniform(0.2, 0.8, size=2 * len(days)))
    frame.loc[frame["model_version"].index[:5], "model_version"] = "other"  # ignored
    report = build_report(
        frame, prices, _reference(prices, reference_accuracy), "2011-06-30", benchmark="^GSPC"
    )
    assert report.decision == decision
    assert report.metrics["n"] == 120  # 60 sessions x 2 tickers, pending ones excluded
    assert report.n_pending == 20
    assert report.share_drifted is not None and report.share_drifted < 0.8
    assert ("accuracy" in report.rules_fired) == (decision == DRIFT)
    assert "data" not in report.rules_fired
    assert report.accuracy_test.p_value == pytest.approx(
        stats.binom.cdf(report.accuracy_test.n_correct, 120, reference_accuracy)
    )
    data = report.to_dict()
    assert data["decision"] == decision and data["config"]["window_sessions"] == 60
    assert len(data["features"]) == 50 and data["reference"]["bullish_share"] == 0.5
    markdown = report.to_markdown()
    assert markdown.startswith("# Drift evaluation: m1 as of 2011-06-30")
    assert report.rule in markdown and "never counted" in markdown
    assert report.evidence()["rules_fired"] == report.rules_fired


def test_data_rule_fires_on_shifted_features(prices: pd.DataFrame) -> None:
    reference = _reference(prices, 0.5)
    shifted = {
        "edges": [[e + 10.0 for e in edges] for edges in reference.reference_histograms["edges"]],
        "counts": reference.reference_histograms["counts"],
    }
    moved = ModelReference(**{**reference.__dict__, "reference_histograms": shifted})
    days = calendar.sessions("2011-01-03", "2011-06-30")
    frame = _predictions(days, ["AAPL", "MSFT"], np.full(2 * len(days), 0.6))
    config = DriftConfig(drifted_share_threshold=0.5)
    report = build_report(frame, prices, moved, "2011-06-30", benchmark="^GSPC", config=config)
    assert report.decision == DRIFT and "data" in report.rules_fired
    assert report.share_drifted == 1.0
    # every feature moved, and only the excluded ones (calendar encodings) are not counted
    assert set(config.exclude_features) == {"dow_sin", "dow_cos", "month_sin", "month_cos"}
    assert set(report.drifted_features) == set(FEATURE_NAMES) - set(config.exclude_features)


def test_plots_are_png(prices: pd.DataFrame, tmp_path) -> None:
    days = calendar.sessions("2011-01-03", "2011-06-30")
    rng = np.random.default_rng(1)
    frame = _predictions(days, ["AAPL", "MSFT"], rng.uniform(0, 1, 2 * len(days)))
    report = build_report(frame, prices, _reference(prices, 0.5), "2011-06-30", benchmark="^GSPC")
    paths = report.save_plots(tmp_path)
    assert sorted(p.name for p in paths) == ["accuracy_over_time.png", "calibration.png", "psi.png"]
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in paths)


def test_drift_plots_leave_pyplot_alone(tmp_path) -> None:
    """Drawn in a fresh interpreter: in this one, an earlier test may have imported pyplot."""
    code = f"""
import sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
import numpy as np
import test_drift as t
from stocktrend import calendar
from stocktrend.data import load_prices
from stocktrend.drift import build_report
from stocktrend.validation import validate_prices
raw = load_prices("sample", ["AAPL", "MSFT", "^GSPC"], "2009-01-01", "2011-06-30")
prices, _ = validate_prices(raw)
days = calendar.sessions("2011-01-03", "2011-06-30")
frame = t._predictions(days, ["AAPL", "MSFT"], np.linspace(0, 1, 2 * len(days)))
report = build_report(frame, prices, t._reference(prices, 0.5), "2011-06-30", benchmark="^GSPC")
assert len(report.save_plots({str(tmp_path)!r})) == 3
assert "matplotlib.pyplot" not in sys.modules, "pyplot was imported"
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]


def test_no_predictions_yet_is_no_drift_with_a_reason(prices: pd.DataFrame) -> None:
    empty = _predictions(pd.DatetimeIndex([]), ["AAPL"], np.array([]))
    report = build_report(
        empty, prices, _reference(prices, 0.5), "2011-06-30", benchmark="^GSPC", tickers=[]
    )
    assert report.decision == NO_DRIFT and report.metrics["n"] == 0
    assert "fewer than the minimum" in report.rule and "not measured" in report.rule
    assert report.to_dict()["window_start"] is None
    assert all(png.startswith(b"\x89PNG") for png in report.plots().values())
