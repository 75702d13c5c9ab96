"""Tests for stocktrend.evaluation: every expected number is derived by hand in a comment."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from stocktrend.evaluation import (
    Report,
    confidence_deciles,
    evaluate,
    format_confusion_matrix,
    json_safe,
    logistic_baseline,
    majority_baseline,
    mcnemar_exact,
    momentum_baseline,
    reliability_table,
    spearman_ic,
)

SEED_BLOCK = """\
Confusion Matrix:
                Predicted
Actual          Bajista  Alcista
Bajista          306       43      ← 87.7% recall
Alcista          105      267      ← 71.8% recall

Overall Accuracy: 79.5%"""

# The 8-sample example. Predicted class = P(up) > 0.5.
#   y    = 1    1    1    1    1    0    0    0
#   p    = .9   .8   .7   .4   .3   .6   .2   .1
#   pred = 1    1    1    0    0    1    0    0
# TP = 3 (first three), FN = 2 (.4, .3), FP = 1 (.6), TN = 2 (.2, .1)
Y8 = np.array([1, 1, 1, 1, 1, 0, 0, 0])
P8 = np.array([0.9, 0.8, 0.7, 0.4, 0.3, 0.6, 0.2, 0.1])


def _index(n: int, tickers: list[str] | None = None, start: str = "2021-01-04") -> pd.DataFrame:
    dates = pd.bdate_range(start, periods=n)
    return pd.DataFrame({"ticker": tickers or ["AAA"] * n, "as_of_date": dates})


def _eval8(**kwargs) -> Report:
    return evaluate(Y8, P8, np.linspace(-0.02, 0.03, 8), _index(8), **kwargs)


def _arrays_for_cm(cm: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Labels and hard probabilities that produce exactly ``cm`` (rows actual, cols predicted)."""
    y, p = [], []
    for actual in (0, 1):
        for predicted in (0, 1):
            y += [actual] * cm[actual][predicted]
            p += [float(predicted)] * cm[actual][predicted]
    return np.array(y), np.array(p)


# --------------------------------------------------------------------------- core metrics


def test_core_metrics_match_hand_computation() -> None:
    m = _eval8().model
    assert m.n == 8
    assert m.confusion_matrix == ((2, 1), (2, 3))  # rows actual [TN FP], [FN TP]
    assert m.accuracy == pytest.approx(5 / 8)  # TP + TN = 5
    bear, bull = m.per_class
    assert (bull.label, bull.seed_label, bear.label, bear.seed_label) == (
        "bullish",
        "Alcista",
        "bearish",
        "Bajista",
    )
    # bullish: precision 3/(3+1), recall 3/(3+2), F1 = 2*.75*.6/(.75+.6) = 2/3
    assert bull.precision == pytest.approx(0.75)
    assert bull.recall == pytest.approx(0.6)
    assert bull.f1 == pytest.approx(2 / 3)
    assert bull.support == 5
    # bearish: precision TN/(TN+FN) = 2/4, recall 2/3, F1 = 2*(1/2)(2/3)/(1/2+2/3) = 4/7
    assert bear.precision == pytest.approx(0.5)
    assert bear.recall == pytest.approx(2 / 3)
    assert bear.f1 == pytest.approx(4 / 7)
    assert bear.support == 3
    # balanced accuracy = (0.6 + 2/3) / 2 = 19/30, not the plain 5/8
    assert m.balanced_accuracy == pytest.approx(19 / 30)
    # Brier: positives (.01+.04+.09+.36+.49)=.99, negatives (.36+.04+.01)=.41 -> 1.40/8
    assert m.brier == pytest.approx(0.175)
    # log loss: -mean of log p for positives and log(1-p) for negatives
    hand = -(
        math.log(0.9)
        + math.log(0.8)
        + math.log(0.7)
        + math.log(0.4)
        + math.log(0.3)
        + math.log(0.4)
        + math.log(0.8)
        + math.log(0.9)
    )
    assert m.log_loss == pytest.approx(hand / 8)
    # AUC: negatives .6 .2 .1; each positive beats 3,3,3,2,2 of them -> 13 / 15 pairs
    assert m.roc_auc == pytest.approx(13 / 15)


def test_auc_counts_ties_as_half_and_is_none_for_one_class() -> None:
    # positives .8 .5, negatives .5 .2: pairs .8>.5, .8>.2, .5=.5 (1/2), .5>.2 -> 3.5 / 4
    y = np.array([1, 1, 0, 0])
    report = evaluate(y, [0.8, 0.5, 0.5, 0.2], np.zeros(4), _index(4))
    assert report.model.roc_auc == pytest.approx(0.875)
    one_class = evaluate(np.ones(4, dtype=int), [0.8, 0.5, 0.5, 0.2], np.zeros(4), _index(4))
    assert one_class.model.roc_auc is None


def test_log_loss_clips_hard_mistakes() -> None:
    # One confident miss (p=1 for a bearish sample) costs -log(1e-7); a confident hit costs
    # -log(1 - 1e-7). Unclipped, the mean would be infinite.
    report = evaluate([0, 1], [1.0, 1.0], np.zeros(2), _index(2))
    expected = (-math.log(1e-7) - math.log(1 - 1e-7)) / 2
    assert report.model.log_loss == pytest.approx(expected)
    assert math.isfinite(report.model.log_loss)


def test_undefined_precision_is_none_not_zero() -> None:
    # Predicting bullish everywhere: no bearish predictions, so bearish precision is 0/0.
    report = evaluate([0, 1, 1], [0.9, 0.9, 0.9], np.zeros(3), _index(3))
    bear, bull = report.model.per_class
    assert bear.precision is None
    assert bear.recall == 0.0
    assert bear.f1 == 0.0  # 2TP/(2TP+FP+FN) = 0/1
    assert bull.precision == pytest.approx(2 / 3)


def test_threshold_tie_goes_to_bearish() -> None:
    # P(up) exactly 0.5 is not > 0.5, so it is bearish like argmax over equal logits.
    report = evaluate([0, 1], [0.5, 0.5], np.zeros(2), _index(2))
    assert report.model.confusion_matrix == ((1, 0), (1, 0))


# --------------------------------------------------------------------------- calibration


def test_reliability_bins_are_equal_width_and_keep_empty_bins() -> None:
    y = np.array([0, 1, 0, 1, 1, 0])
    p = np.array([0.05, 0.05, 0.15, 0.95, 1.0, 0.55])
    table = reliability_table(y, p)
    assert len(table) == 10
    assert [b.count for b in table] == [2, 1, 0, 0, 0, 1, 0, 0, 0, 2]
    assert (table[0].lower, table[0].upper) == (0.0, 0.1)
    assert table[0].mean_predicted == pytest.approx(0.05)
    assert table[0].observed_frequency == pytest.approx(0.5)  # one of two is bullish
    assert table[1].observed_frequency == 0.0
    # 1.0 falls in the last bin, not an eleventh one: mean of .95 and 1.0
    assert table[9].mean_predicted == pytest.approx(0.975)
    assert table[9].observed_frequency == 1.0
    assert table[2].mean_predicted is None and table[2].observed_frequency is None


def test_confidence_deciles_rank_by_confidence() -> None:
    # 20 samples; confidence max(p, 1-p) rises with i. The two least confident are
    # wrong, everything else right -> decile 1 accuracy 0, the rest 1.
    conf = np.linspace(0.51, 0.99, 20)
    p = np.where(np.arange(20) % 2 == 0, conf, 1 - conf)  # alternate bullish/bearish calls
    y = (p > 0.5).astype(int)
    y[:2] = 1 - y[:2]
    groups = confidence_deciles(y, p)
    assert [g.decile for g in groups] == list(range(1, 11))
    assert [g.count for g in groups] == [2] * 10
    assert [g.accuracy for g in groups] == [0.0] + [1.0] * 9
    assert groups[0].mean_confidence == pytest.approx((conf[0] + conf[1]) / 2)
    assert groups[-1].min_confidence == pytest.approx(conf[18])


def test_confidence_deciles_with_few_samples_drop_empty_groups() -> None:
    groups = confidence_deciles(np.array([1, 0, 1]), np.array([0.9, 0.2, 0.6]))
    assert sum(g.count for g in groups) == 3
    assert all(g.count > 0 for g in groups)


def test_spearman_ic() -> None:
    p = np.array([0.1, 0.4, 0.3, 0.9])
    r = np.array([-0.05, 0.01, 0.00, 0.07])  # same ranks as p
    assert spearman_ic(p, r).rho == pytest.approx(1.0)
    assert spearman_ic(p, -r).rho == pytest.approx(-1.0)
    assert spearman_ic(np.full(4, 0.6), r).rho is None  # constant P(up): no ranking
    with_nan = spearman_ic(np.append(p, 0.5), np.append(r, np.nan))
    assert with_nan.n == 4 and with_nan.rho == pytest.approx(1.0)


# --------------------------------------------------------------------------- breakdowns


def test_breakdowns_per_ticker_and_year() -> None:
    index = pd.DataFrame(
        {
            "ticker": ["AAA", "AAA", "BBB", "BBB", "BBB"],
            "as_of_date": pd.to_datetime(
                ["2020-12-30", "2021-01-05", "2020-12-31", "2021-01-04", "2021-01-06"]
            ),
        }
    )
    y = np.array([1, 0, 1, 1, 0])
    p = np.array([0.8, 0.7, 0.2, 0.9, 0.1])  # correct: yes, no, no, yes, yes
    report = evaluate(y, p, np.zeros(5), index, baselines={"up": np.ones(5)})
    by_ticker = {g.group: g for g in report.by_ticker}
    assert by_ticker["AAA"].n == 2 and by_ticker["AAA"].accuracy == 0.5
    assert by_ticker["AAA"].base_rate == 0.5
    assert by_ticker["BBB"].n == 3 and by_ticker["BBB"].accuracy == pytest.approx(2 / 3)
    assert by_ticker["BBB"].base_rate == pytest.approx(2 / 3)
    assert by_ticker["BBB"].baseline_accuracy == {"up": pytest.approx(2 / 3)}
    by_year = {g.group: g for g in report.by_year}
    assert list(by_year) == ["2020", "2021"]
    assert by_year["2020"].n == 2 and by_year["2020"].accuracy == 0.5  # rows 0 and 2
    assert by_year["2021"].accuracy == pytest.approx(2 / 3)  # rows 1, 3, 4
    assert by_year["2021"].base_rate == pytest.approx(1 / 3)
    assert (report.period_start, report.period_end) == ("2020-12-30", "2021-01-06")
    assert report.n_tickers == 2


# --------------------------------------------------------------------------- significance


def _discordant(b: int, c: int, both: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Correctness vectors: b model-only hits, c baseline-only hits, ``both`` shared hits."""
    model = np.array([True] * b + [False] * c + [True] * both)
    other = np.array([False] * b + [True] * c + [True] * both)
    return model, other


def test_mcnemar_matches_binomtest_and_hand_value() -> None:
    b, c, p = mcnemar_exact(*_discordant(8, 2))
    assert (b, c) == (8, 2)
    # two-sided: 2 * P(X <= 2), X ~ Bin(10, 1/2) = 2 * (1 + 10 + 45) / 1024
    assert p == pytest.approx(112 / 1024)
    assert p == pytest.approx(stats.binomtest(8, 10, 0.5).pvalue)
    assert mcnemar_exact(*_discordant(0, 0))[2] == 1.0  # no discordant pairs: no evidence
    assert mcnemar_exact(*_discordant(3, 3))[2] == pytest.approx(1.0)


def test_evaluate_runs_mcnemar_against_best_baseline() -> None:
    # 15 samples, all bullish. Model right on 13 (wrong on 0, 1). Baseline "good" right on
    # 11 (wrong on 2..5), baseline "weak" right on 5. Best = "good".
    # b = model right & good wrong = {2,3,4,5} = 4; c = model wrong & good right = {0,1} = 2.
    n = 15
    y = np.ones(n, dtype=int)
    model = np.ones(n)
    model[[0, 1]] = 0.0
    good = np.ones(n)
    good[[2, 3, 4, 5]] = 0.0
    weak = np.zeros(n)
    weak[:5] = 1.0
    report = evaluate(
        y, model, np.zeros(n), _index(n), baselines={"weak": weak, "good": good}, name="cnn"
    )
    mc = report.mcnemar
    assert mc is not None
    assert mc.baseline == "good"
    assert mc.baseline_accuracy == pytest.approx(11 / 15)
    assert (mc.b, mc.c, mc.statistic) == (4, 2, 4)
    # 2 * P(X <= 2), X ~ Bin(6, 1/2) = 2 * (1 + 6 + 15) / 64 = 44/64
    assert mc.p_value == pytest.approx(44 / 64)
    text = report.to_markdown()
    assert "cnn is not significantly better than good" in text
    assert "(McNemar p=0.69" in text


def test_mcnemar_verdict_says_better_when_significant() -> None:
    # b = 20, c = 0: p = 2 / 2**20, far below 0.05.
    model_right, base_right = _discordant(20, 0, both=0)
    y = np.ones(20, dtype=int)
    report = evaluate(
        y,
        model_right.astype(float),
        np.zeros(20),
        _index(20),
        baselines={"momentum": base_right.astype(float)},
    )
    assert report.mcnemar is not None
    assert report.mcnemar.p_value == pytest.approx(2 / 2**20)
    assert "model is significantly better than momentum" in report.to_markdown()


def test_binomial_test_against_majority_baseline_rate() -> None:
    # 5 bullish, 5 bearish; the majority baseline (train majority = bullish) scores 0.5.
    # Model right on 9 of 10: P(X >= 9 | Bin(10, 1/2)) = (10 + 1) / 1024.
    y = np.array([1] * 5 + [0] * 5)
    p = np.where(y == 1, 0.8, 0.2)
    p[0] = 0.3  # one miss
    majority = majority_baseline([1, 1, 0], 10)
    report = evaluate(y, p, np.zeros(10), _index(10), baselines={"majority": majority})
    bt = report.binomial_vs_majority
    assert (bt.statistic, bt.n, bt.alternative) == (9, 10, "greater")
    assert bt.null_rate == pytest.approx(0.5)
    assert "majority" in bt.null_rate_source
    assert bt.p_value == pytest.approx(11 / 1024)
    assert report.majority_rate == pytest.approx(0.5)


def test_binomial_test_without_majority_baseline_uses_sample_majority_share() -> None:
    # 7 of 10 bearish -> null rate 0.7; model right on 8: P(X >= 8 | Bin(10, .7)).
    y = np.array([0] * 7 + [1] * 3)
    p = np.where(y == 1, 0.9, 0.1)
    p[[0, 1]] = 0.9
    report = evaluate(y, p, np.zeros(10), _index(10))
    bt = report.binomial_vs_majority
    assert bt.null_rate == pytest.approx(0.7)
    expected = sum(math.comb(10, k) * 0.7**k * 0.3 ** (10 - k) for k in (8, 9, 10))
    assert bt.p_value == pytest.approx(expected)
    assert report.mcnemar is None


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("y", "p", "fwd", "n_index", "baselines", "match"),
    [
        ([1, 0], [0.5], [0, 0], 2, None, "p_up"),
        ([1, 0], [0.5, 0.5], [0], 2, None, "forward_returns"),
        ([1, 0], [0.5, 0.5], [0, 0], 3, None, "index"),
        ([1, 0], [0.5, 0.5], [0, 0], 2, {"m": [1.0]}, "baseline"),
        ([1.0, np.nan], [0.5, 0.5], [0, 0], 2, None, "NaN"),
        ([1, 2], [0.5, 0.5], [0, 0], 2, None, "only 0"),
        ([1, 0], [0.5, 1.5], [0, 0], 2, None, r"\[0, 1\]"),
        ([1, 0], [0.5, np.nan], [0, 0], 2, None, "NaN"),
        ([], [], [], 0, None, "zero samples"),
    ],
)
def test_evaluate_rejects_bad_input(y, p, fwd, n_index, baselines, match) -> None:
    index = _index(n_index) if n_index else pd.DataFrame({"ticker": [], "as_of_date": []})
    with pytest.raises(ValueError, match=match):
        evaluate(np.asarray(y), p, fwd, index, baselines=baselines)


def test_evaluate_rejects_index_without_columns() -> None:
    with pytest.raises(ValueError, match="ticker"):
        evaluate(Y8, P8, np.zeros(8), _index(8).drop(columns="ticker"))


# --------------------------------------------------------------------------- baselines


def test_majority_baseline_uses_training_majority() -> None:
    assert majority_baseline([1, 1, 0], 4).tolist() == [1.0] * 4
    assert majority_baseline([0, 0, 1], 2).tolist() == [0.0, 0.0]
    assert majority_baseline([0, 1], 1).tolist() == [1.0]  # tie -> bullish
    with pytest.raises(ValueError):
        majority_baseline([], 3)


def test_momentum_baseline() -> None:
    assert momentum_baseline([0.01, -0.02, 0.0, 1e-9]).tolist() == [1.0, 0.0, 0.0, 1.0]
    with pytest.raises(ValueError):
        momentum_baseline([0.01, np.nan])


def test_logistic_baseline_separates_toy_data() -> None:
    rng = np.random.default_rng(0)
    X_neg = rng.normal(-2.0, 0.3, size=(20, 2))
    X_pos = rng.normal(2.0, 0.3, size=(20, 2))
    X_train = np.vstack([X_neg, X_pos])
    y_train = np.array([0] * 20 + [1] * 20)
    X_eval = np.array([[-2.0, -2.0], [2.0, 2.0], [-1.5, -2.5], [2.5, 1.5]])
    p = logistic_baseline(X_train, y_train, X_eval)
    assert p.shape == (4,)
    assert (p[[0, 2]] < 0.1).all() and (p[[1, 3]] > 0.9).all()
    assert np.array_equal(p, logistic_baseline(X_train, y_train, X_eval, seed=0))


def test_logistic_baseline_uses_only_the_last_day_of_windows() -> None:
    # Windows (N, 3, 1): the earlier days carry the *opposite* signal, the last day the
    # true one. Fitting on the last day must still separate the classes correctly.
    last = np.concatenate([np.full(10, -1.0), np.full(10, 1.0)])
    windows = np.stack([-last, -last, last], axis=1)[:, :, None]
    y = (last > 0).astype(int)
    # Evaluation windows whose earlier days agree with the last one: a model fitted on
    # any day but the last would learn the sign backwards and flip every prediction here.
    eval_windows = np.stack([last, last, last], axis=1)[:, :, None]
    p = logistic_baseline(windows, y, eval_windows)
    assert (p[y == 1] > 0.5).all() and (p[y == 0] < 0.5).all()
    rows = logistic_baseline(windows[:, -1, :], y, eval_windows[:, -1, :])
    assert np.allclose(p, rows)  # (N, T, F) windows == their (N, F) last-day rows
    with pytest.raises(ValueError, match="both classes"):
        logistic_baseline(windows, np.ones(20, dtype=int), windows)


# --------------------------------------------------------------------------- outputs


def test_confusion_matrix_block_matches_seed_format_exactly() -> None:
    assert format_confusion_matrix([[306, 43], [105, 267]]) == SEED_BLOCK


def test_markdown_contains_seed_block_and_headline_table() -> None:
    y, p = _arrays_for_cm([[306, 43], [105, 267]])
    n = len(y)
    momentum = np.roll(p, 1)
    report = evaluate(y, p, np.zeros(n), _index(n), baselines={"momentum": momentum})
    assert report.model.confusion_matrix == ((306, 43), (105, 267))
    text = report.to_markdown()
    assert SEED_BLOCK in text
    assert f"Samples: {n}" in text
    assert "| **model** | 0.795 |" in text  # 573 / 721 = 0.7947
    assert "| momentum |" in text
    for heading in ("Per class", "Calibration", "confidence decile", "Per ticker", "Per year"):
        assert heading in text


def test_json_round_trip_has_no_nan(tmp_path: Path) -> None:
    # One class and constant P(up): AUC and Spearman IC are undefined, and must become null.
    n = 6
    report = evaluate(
        np.ones(n, dtype=int), np.full(n, 0.7), np.full(n, 0.01), _index(n), baselines={}
    )
    path = report.to_json(tmp_path / "sub" / "report.json")

    def reject(token: str) -> None:
        raise AssertionError(f"non-standard JSON constant {token}")

    data = json.loads(path.read_text(encoding="utf-8"), parse_constant=reject)
    assert data["model"]["roc_auc"] is None
    assert data["spearman_ic"]["rho"] is None
    assert data["model"]["accuracy"] == 1.0
    assert data["model"]["confusion_matrix"] == [[0, 0], [0, 6]]
    assert data == report.to_dict()


def test_to_dict_keys() -> None:
    d = _eval8(baselines={"momentum": np.ones(8)}).to_dict()
    assert set(d) == {
        "name",
        "n_samples",
        "n_tickers",
        "period",
        "threshold",
        "alpha",
        "majority_rate",
        "majority_rate_source",
        "model",
        "baselines",
        "reliability",
        "confidence_deciles",
        "spearman_ic",
        "significance",
        "by_ticker",
        "by_year",
    }
    assert set(d["model"]) == set(d["baselines"]["momentum"])
    assert d["significance"]["mcnemar"]["baseline"] == "momentum"
    assert d["model"]["per_class"][1]["label"] == "bullish"
    json.dumps(d, allow_nan=False)


def test_save_plots_writes_png_files(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    n = 120
    y = rng.integers(0, 2, n)
    p = np.clip(0.5 + 0.3 * (y - 0.5) + rng.normal(0, 0.2, n), 0, 1)
    index = _index(n, tickers=["AAA", "BBB"] * (n // 2), start="2021-11-01")
    report = evaluate(
        y, p, rng.normal(0, 0.02, n), index, baselines={"majority": majority_baseline(y, n)}
    )
    paths = report.save_plots(tmp_path / "plots")
    assert sorted(p.name for p in paths) == ["accuracy_over_time.png", "calibration.png"]
    for path in paths:
        data = path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        assert len(data) > 1000


def test_import_and_plotting_leave_pyplot_alone(tmp_path: Path) -> None:
    code = (
        "import sys, numpy as np, pandas as pd\n"
        "import stocktrend.evaluation as ev\n"
        "assert 'matplotlib' not in sys.modules, 'matplotlib imported at import time'\n"
        "idx = pd.DataFrame({'ticker': ['A'] * 4,"
        " 'as_of_date': pd.bdate_range('2021-01-04', periods=4)})\n"
        "r = ev.evaluate([0, 1, 1, 0], [0.2, 0.7, 0.4, 0.6], np.zeros(4), idx)\n"
        f"r.save_plots({str(tmp_path)!r})\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot was imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_json_safe_replaces_non_finite_floats() -> None:
    raw = {"a": np.float64("nan"), "b": (1, np.int64(2)), "c": [float("inf"), np.float32(0.5)]}
    assert json_safe(raw) == {"a": None, "b": [1, 2], "c": [None, 0.5]}
    assert type(json_safe(raw)["b"][1]) is int
    assert json_safe({"day": pd.Timestamp("2013-03-01")}) == {"day": "2013-03-01T00:00:00"}
