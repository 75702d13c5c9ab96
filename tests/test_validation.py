"""validate_prices on the bundled real sample, and on copies of it broken one rule at a time.

Each broken case corrupts MSFT in a two-ticker 2005 slice (MSFT + IBM) and checks the
rule, severity, ticker and dates of the issue, that MSFT is dropped (errors) or kept
unchanged (warnings/fixes), and that IBM comes out exactly as it went in.
"""

from __future__ import annotations

import json
from importlib.resources import files

import numpy as np
import pandas as pd
import pytest

from stocktrend.errors import PriceValidationError
from stocktrend.validation import Issue, ValidationReport, validate_prices

DAY = pd.Timestamp("2005-06-01")  # a Wednesday session in the middle of the slice


@pytest.fixture(scope="module")
def sample() -> pd.DataFrame:
    path = files("stocktrend") / "data" / "sample_prices.parquet"
    return pd.read_parquet(str(path))


@pytest.fixture
def pair(sample: pd.DataFrame) -> pd.DataFrame:
    """MSFT and IBM for 2005: 2 x 252 real sessions, sorted, RangeIndex."""
    keep = sample["ticker"].isin(["IBM", "MSFT"]) & (sample["date"].dt.year == 2005)
    return sample.loc[keep].reset_index(drop=True)


def rows_of(df: pd.DataFrame, ticker: str) -> pd.DataFrame:
    return df.loc[df["ticker"] == ticker].reset_index(drop=True)


def only(report: ValidationReport, rule: str) -> Issue:
    found = [i for i in report.issues if i.rule == rule]
    assert len(found) == 1, report.summary()
    return found[0]


def assert_msft_dropped(out: pd.DataFrame, report: ValidationReport, pair: pd.DataFrame) -> None:
    assert not report.ok
    assert list(report.dropped_tickers) == ["MSFT"]
    assert report.kept_tickers == ["IBM"]
    pd.testing.assert_frame_equal(out, rows_of(pair, "IBM"))
    assert report.n_rows_out == len(out)


def assert_all_kept(out: pd.DataFrame, report: ValidationReport, pair: pd.DataFrame) -> None:
    assert report.ok, report.summary()
    assert report.dropped_tickers == {}
    pd.testing.assert_frame_equal(out, pair)


def with_msft(pair: pd.DataFrame, day: pd.Timestamp, **values: float) -> pd.DataFrame:
    """A copy of ``pair`` with MSFT's row on ``day`` set to ``values``."""
    out = pair.copy()
    at = (out["ticker"] == "MSFT") & (out["date"] == day)
    assert at.sum() == 1
    for column, value in values.items():
        out.loc[at, column] = value
    return out


# --- the real sample --------------------------------------------------------------------------


def test_bundled_sample_passes_unchanged(sample: pd.DataFrame) -> None:
    out, report = validate_prices(sample)
    assert report.ok, report.summary()
    assert report.errors == [] and report.fixes == []
    assert report.kept_tickers == ["AAPL", "GOOG", "IBM", "MSFT", "^GSPC", "^IXIC"]
    assert report.n_rows_in == report.n_rows_out == len(sample)
    pd.testing.assert_frame_equal(out, sample)


def test_aapl_crash_of_2000_09_29_is_kept_and_at_most_a_warning(sample: pd.DataFrame) -> None:
    crash = pd.Timestamp("2000-09-29")
    out, report = validate_prices(sample)
    on_crash = [i for i in report.issues if crash in i.dates]
    assert all(i.severity == "warning" for i in on_crash)
    assert [(i.rule, i.ticker) for i in on_crash] == [("large_move", "AAPL")]
    assert "2000-09-29" in on_crash[0].message and "-51.9%" in on_crash[0].message
    assert crash in set(out.loc[out["ticker"] == "AAPL", "date"])


def test_input_frame_is_not_modified(pair: pd.DataFrame) -> None:
    broken = with_msft(pair, DAY, close=np.nan).iloc[::-1]
    before = broken.copy()
    validate_prices(broken)
    pd.testing.assert_frame_equal(broken, before)


# --- frame-level failures ---------------------------------------------------------------------


def test_missing_column_raises_naming_it(pair: pd.DataFrame) -> None:
    with pytest.raises(PriceValidationError, match="volume") as info:
        validate_prices(pair.drop(columns=["volume"]))
    assert "missing" in str(info.value)


def test_not_a_dataframe_raises() -> None:
    with pytest.raises(PriceValidationError, match="DataFrame"):
        validate_prices([1, 2, 3])  # type: ignore[arg-type]


def test_non_numeric_close_raises_naming_column_and_value(pair: pd.DataFrame) -> None:
    bad = pair.astype({"close": object})
    bad.loc[3, "close"] = "n/a"
    with pytest.raises(PriceValidationError, match=r"'close'.*'n/a'"):
        validate_prices(bad)


def test_unparseable_dates_raise(pair: pd.DataFrame) -> None:
    bad = pair.assign(date=pair["date"].dt.strftime("%Y-%m-%d"))
    bad.loc[5, "date"] = "2005-13-45"
    with pytest.raises(PriceValidationError, match="2005-13-45"):
        validate_prices(bad)


def test_text_numbers_and_dates_are_coerced_as_a_fix(pair: pd.DataFrame) -> None:
    text = pair.assign(
        date=pair["date"].dt.strftime("%Y-%m-%d"),
        close=pair["close"].map(repr),
    )
    out, report = validate_prices(text)
    assert report.ok
    fix = only(report, "coerced_dtype")
    assert fix.severity == "fixed" and "close" in fix.message and "date" in fix.message
    assert out["close"].dtype == np.float64
    np.testing.assert_array_equal(out["close"].to_numpy(), pair["close"].to_numpy())
    np.testing.assert_array_equal(
        out["date"].to_numpy("datetime64[ns]"), pair["date"].to_numpy("datetime64[ns]")
    )


# --- order --------------------------------------------------------------------------------------


def test_unsorted_rows_are_sorted_and_reported(pair: pd.DataFrame) -> None:
    shuffled = pair.sample(frac=1.0, random_state=7)
    out, report = validate_prices(shuffled)
    assert_all_kept(out, report, pair)
    fix = only(report, "unsorted")
    assert fix.severity == "fixed" and fix.ticker is None
    assert "IBM" in fix.message and "MSFT" in fix.message
    assert isinstance(out.index, pd.RangeIndex)


def test_sorted_input_reports_no_fix_even_with_an_odd_index(pair: pd.DataFrame) -> None:
    out, report = validate_prices(pair.set_axis(np.arange(len(pair)) * 10 + 3))
    assert report.issues == []
    assert_all_kept(out, report, pair)


# --- per-ticker errors ----------------------------------------------------------------------------


def test_duplicate_date_drops_the_ticker(pair: pd.DataFrame) -> None:
    msft_day = pair[(pair["ticker"] == "MSFT") & (pair["date"] == DAY)]
    broken = pd.concat([pair, msft_day.assign(close=msft_day["low"])], ignore_index=True)
    out, report = validate_prices(broken)
    issue = only(report, "duplicate_date")
    assert (issue.severity, issue.ticker, issue.dates) == ("error", "MSFT", (DAY,))
    assert "2005-06-01" in issue.message
    assert_msft_dropped(out, report, pair)


def test_nan_close_is_an_error_not_forward_filled(pair: pd.DataFrame) -> None:
    out, report = validate_prices(with_msft(pair, DAY, close=np.nan))
    issue = only(report, "missing_price")
    assert (issue.severity, issue.ticker, issue.dates) == ("error", "MSFT", (DAY,))
    assert "close" in issue.message and "2005-06-01" in issue.message
    assert "open" not in issue.message
    assert_msft_dropped(out, report, pair)


def test_non_positive_price_is_an_error(pair: pd.DataFrame) -> None:
    out, report = validate_prices(with_msft(pair, DAY, low=0.0))
    issue = only(report, "non_positive_price")
    assert (issue.severity, issue.ticker) == ("error", "MSFT")
    assert "low" in issue.message and "2005-06-01" in issue.message
    assert_msft_dropped(out, report, pair)


def test_high_below_low_is_an_error(pair: pd.DataFrame) -> None:
    row = pair[(pair["ticker"] == "MSFT") & (pair["date"] == DAY)].iloc[0]
    broken = with_msft(pair, DAY, high=row["low"] * 0.9)
    out, report = validate_prices(broken)
    issue = only(report, "ohlc_inconsistent")
    assert (issue.severity, issue.ticker, issue.dates) == ("error", "MSFT", (DAY,))
    assert "high < low" in issue.message and "2005-06-01" in issue.message
    assert_msft_dropped(out, report, pair)


def test_close_above_high_is_an_error_but_rounding_is_tolerated(pair: pd.DataFrame) -> None:
    row = pair[(pair["ticker"] == "MSFT") & (pair["date"] == DAY)].iloc[0]
    rounded = with_msft(pair, DAY, close=row["high"] * (1 + 1e-9))
    out, report = validate_prices(rounded)
    assert report.issues == []
    assert_all_kept(out, report, rounded)

    out, report = validate_prices(with_msft(pair, DAY, close=row["high"] * 1.01))
    issue = only(report, "ohlc_inconsistent")
    assert "close outside [low, high]" in issue.message and issue.dates == (DAY,)
    assert_msft_dropped(out, report, pair)


def test_nan_or_negative_volume_is_an_error(pair: pd.DataFrame) -> None:
    later = pd.Timestamp("2005-06-02")
    broken = with_msft(pair.astype({"volume": float}), DAY, volume=np.nan)
    broken = with_msft(broken, later, volume=-5.0)
    out, report = validate_prices(broken)
    issue = only(report, "bad_volume")
    assert (issue.severity, issue.ticker, issue.dates) == ("error", "MSFT", (DAY, later))
    assert "2 dates: 2005-06-01, 2005-06-02" in issue.message
    assert_msft_dropped(out, report, pair.astype({"volume": float}))


def test_bad_ticker_symbol_is_an_error(pair: pd.DataFrame) -> None:
    broken = pair.assign(ticker=pair["ticker"].replace({"MSFT": "msft "}))
    out, report = validate_prices(broken)
    issue = only(report, "bad_ticker")
    assert (issue.severity, issue.ticker) == ("error", "msft ")
    assert "'msft '" in issue.message
    assert list(report.dropped_tickers) == ["msft "]
    pd.testing.assert_frame_equal(out, rows_of(pair, "IBM"))


def test_missing_ticker_symbol_is_an_error(pair: pd.DataFrame) -> None:
    broken = pair.copy()
    broken.loc[0, "ticker"] = None
    out, report = validate_prices(broken)
    assert only(report, "bad_ticker").ticker == ""
    assert "" in report.dropped_tickers
    assert len(out) == len(pair) - 1


def test_weekend_row_is_not_a_session(pair: pd.DataFrame) -> None:
    saturday = pd.Timestamp("2005-06-04")
    extra = pair[(pair["ticker"] == "MSFT") & (pair["date"] == DAY)].assign(date=saturday)
    broken = pd.concat([pair, extra], ignore_index=True)
    out, report = validate_prices(broken)
    issue = only(report, "not_a_session")
    assert (issue.severity, issue.ticker, issue.dates) == ("error", "MSFT", (saturday,))
    assert "2005-06-04 (Sat)" in issue.message
    assert_msft_dropped(out, report, pair)
    assert only(report, "unsorted").severity == "fixed"


def test_calendar_check_off_accepts_the_weekend_row(pair: pd.DataFrame) -> None:
    saturday = pd.Timestamp("2005-06-04")
    extra = pair[(pair["ticker"] == "MSFT") & (pair["date"] == DAY)].assign(date=saturday)
    out, report = validate_prices(pd.concat([pair, extra]), calendar_check=False)
    assert report.ok
    assert saturday in set(out["date"])


def test_missing_session_is_a_gap_error_naming_the_date(pair: pd.DataFrame) -> None:
    broken = pair[~((pair["ticker"] == "MSFT") & (pair["date"] == DAY))]
    out, report = validate_prices(broken)
    issue = only(report, "session_gap")
    assert (issue.severity, issue.ticker, issue.dates) == ("error", "MSFT", (DAY,))
    assert "gap in prices" in issue.message and "2005-06-01" in issue.message
    assert "between 2005-01-03 and 2005-12-30" in issue.message
    assert_msft_dropped(out, report, pair)


def test_long_gap_lists_first_dates_and_a_count(pair: pd.DataFrame) -> None:
    march = (pair["ticker"] == "MSFT") & (pair["date"].dt.month == 3)
    _, report = validate_prices(pair[~march])
    issue = only(report, "session_gap")
    assert len(issue.dates) == 22
    assert "22 NYSE session(s) missing" in issue.message
    assert "2005-03-01, 2005-03-02" in issue.message and "(+17 more)" in issue.message
    assert "2005-03-31" not in issue.message


def test_later_start_is_not_a_gap(pair: pd.DataFrame) -> None:
    late = (pair["ticker"] == "MSFT") & (pair["date"] < DAY)
    out, report = validate_prices(pair[~late])
    assert report.ok and report.issues == []
    assert len(out) == len(pair) - late.sum()


# --- warnings: kept, flagged --------------------------------------------------------------------


def test_zero_volume_is_kept_and_flagged(pair: pd.DataFrame) -> None:
    broken = with_msft(pair, DAY, volume=0)
    out, report = validate_prices(broken)
    issue = only(report, "zero_volume")
    assert (issue.severity, issue.ticker, issue.dates) == ("warning", "MSFT", (DAY,))
    assert "2005-06-01" in issue.message
    assert_all_kept(out, report, broken)


def test_unadjusted_2_for_1_split_is_a_warning(pair: pd.DataFrame) -> None:
    broken = pair.copy()
    before = (broken["ticker"] == "MSFT") & (broken["date"] < DAY)
    broken.loc[before, ["open", "high", "low", "close"]] *= 2.0
    out, report = validate_prices(broken)
    issue = only(report, "split_like")
    assert (issue.severity, issue.ticker, issue.dates) == ("warning", "MSFT", (DAY,))
    assert "looks like an unadjusted 2:1 split on 2005-06-01" in issue.message
    assert not [i for i in report.issues if i.rule == "large_move"]
    assert_all_kept(out, report, broken)


def test_unadjusted_reverse_split_is_a_warning(pair: pd.DataFrame) -> None:
    broken = pair.copy()
    before = (broken["ticker"] == "MSFT") & (broken["date"] < DAY)
    broken.loc[before, ["open", "high", "low", "close"]] /= 10.0
    out, report = validate_prices(broken)
    issue = only(report, "split_like")
    assert "1:10 reverse split on 2005-06-01" in issue.message
    assert_all_kept(out, report, broken)


def test_large_non_split_move_is_a_warning(pair: pd.DataFrame) -> None:
    broken = pair.copy()
    after = (broken["ticker"] == "MSFT") & (broken["date"] >= DAY)
    broken.loc[after, ["open", "high", "low", "close"]] *= 2.6  # not near 2 or 3
    out, report = validate_prices(broken)
    issue = only(report, "large_move")
    assert (issue.severity, issue.ticker, issue.dates) == ("warning", "MSFT", (DAY,))
    assert "2005-06-01" in issue.message
    assert not [i for i in report.issues if i.rule == "split_like"]
    assert_all_kept(out, report, broken)

    _, quiet = validate_prices(broken, max_abs_log_return=None)
    assert quiet.issues == []


# --- the report ----------------------------------------------------------------------------


def test_report_forms_are_readable_and_json_safe(pair: pd.DataFrame) -> None:
    broken = with_msft(with_msft(pair, DAY, close=np.nan), pd.Timestamp("2005-06-02"), volume=0)
    _, report = validate_prices(broken.iloc[::-1])
    as_dict = json.loads(json.dumps(report.to_dict()))
    assert as_dict["ok"] is False and as_dict["dropped_tickers"].keys() == {"MSFT"}
    assert {i["rule"] for i in as_dict["issues"]} == {"missing_price", "zero_volume", "unsorted"}
    assert ["2005-06-01"] in [i["dates"] for i in as_dict["issues"]]

    table = report.to_frame()
    assert list(table["rule"]) == ["unsorted", "missing_price", "zero_volume"]
    assert table.loc[1, "first_date"] == DAY and table.loc[1, "n_dates"] == 1

    text = report.summary()
    assert "2 tickers in, 1 kept, 1 dropped" in text
    assert "Errors (1)" in text and "Warnings (1)" in text and "Fixed (1)" in text
    assert "MSFT: NaN or infinite close on 2005-06-01" in text


def test_empty_frame_is_ok(pair: pd.DataFrame) -> None:
    out, report = validate_prices(pair.iloc[:0])
    assert report.ok and report.n_rows_out == 0 and report.kept_tickers == []
    assert list(out.columns) == list(pair.columns)


def test_500_tickers_by_2520_sessions_validates_whole(sample: pd.DataFrame) -> None:
    """The benchmark's size passes untouched (its speed is timed in benchmarks/, not here)."""
    msft = rows_of(sample, "MSFT").iloc[:2520]
    big = pd.concat([msft.assign(ticker=f"T{n:03d}") for n in range(500)], ignore_index=True)
    out, report = validate_prices(big)
    assert report.ok and len(out) == 1_260_000 and len(report.kept_tickers) == 500
