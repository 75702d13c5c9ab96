"""The yfinance adapter and the incremental cache, offline.

Fake downloads return frames in yfinance 1.7's exact output shape, built the
way ``yfinance/multi.py`` builds them: per-ticker ``Ticker.history`` frames
(index ``Date``, ``datetime64[s, America/New_York]``; columns Open, High, Low,
Close, Volume with int64 volume), failed tickers as ``utils.empty_df()``
(all-NaN, with an ``Adj Close`` column), tz dropped for daily data, reindexed
to the union of dates, concatenated with column names ``[Ticker, Price]`` and,
for ``group_by="column"``, swapped to ``[Price, Ticker]`` and sorted. One test
checks that shape against yfinance's own ``download`` with only the network
layer faked.
"""

from __future__ import annotations

import logging
import random
import socket
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stocktrend.config import Settings
from stocktrend.data import PRICE_COLUMNS, load_prices, load_prices_with_report
from stocktrend.data.cache import cache_path, load_with_cache
from stocktrend.data.yahoo import NO_DATA, fetch_yfinance, frame_from_download
from stocktrend.errors import ConfigError, SourceUnavailableError

TZ = "America/New_York"
YF_LOG = logging.getLogger("yfinance")


# --------------------------------------------------------------------------- yfinance-shaped frames


def history_frame(rows: pd.DataFrame, tz: str = TZ) -> pd.DataFrame:
    """One ticker as ``Ticker.history(auto_adjust=True, actions=False)`` returns it for 1d bars."""
    index = pd.to_datetime(rows["date"].dt.date.to_numpy()).tz_localize(tz)
    frame = pd.DataFrame(
        {
            "Open": rows["open"].to_numpy(),
            "High": rows["high"].to_numpy(),
            "Low": rows["low"].to_numpy(),
            "Close": rows["close"].to_numpy(),
            "Volume": rows["volume"].round().astype(np.int64).to_numpy(),
        },
        index=index,
    )
    frame.index.name = "Date"
    return frame


def dead_frame() -> pd.DataFrame:
    """What yfinance keeps for a failed ticker: ``utils.empty_df()``."""
    nan = np.nan
    frame = pd.DataFrame(
        index=[],
        data={"Open": nan, "High": nan, "Low": nan, "Close": nan, "Adj Close": nan, "Volume": nan},
    )
    frame.index.name = "Date"
    return frame


def yf_frame(
    per_ticker: dict[str, pd.DataFrame], group_by: str = "column", ignore_tz: bool = True
) -> pd.DataFrame:
    """Assemble per-ticker frames exactly as ``yfinance.multi._download_impl`` does."""
    dfs = {t: df.copy() for t, df in per_ticker.items()}
    if ignore_tz:
        for df in dfs.values():
            if not df.empty:
                df.index = df.index.tz_localize(None)
    index = None
    for df in dfs.values():
        if not df.empty:
            index = df.index if index is None else index.union(df.index)
    if index is None:
        index = pd.DatetimeIndex([])
    dfs = {t: df.reindex(index) for t, df in dfs.items()}
    data = pd.concat(dfs.values(), axis=1, sort=True, keys=dfs.keys(), names=["Ticker", "Price"])
    if group_by == "column":
        data.columns = data.columns.swaplevel(0, 1)
        data = data.sort_index(level=0, axis=1)
    return data


class FakeYahoo:
    """A ``yfinance.download`` stand-in serving the real sample prices.

    Unknown tickers come back as dead (all-NaN) and are logged the way
    yfinance 1.7 logs them; ``fail`` can make a call raise or degrade.
    """

    def __init__(self, prices: pd.DataFrame, *, group_by: str | None = None, fail=None) -> None:
        self.prices = prices
        self.group_by = group_by
        self.fail = fail
        self.calls: list[dict] = []

    def __call__(self, tickers, start=None, end=None, **kwargs) -> pd.DataFrame:
        self.calls.append({"tickers": list(tickers), "start": start, "end": end, **kwargs})
        if self.fail is not None:
            outcome = self.fail(len(self.calls), list(tickers))
            if isinstance(outcome, BaseException):
                raise outcome
            if isinstance(outcome, pd.DataFrame):
                return outcome
        return self.frame(tickers, start, end, kwargs.get("group_by", "column"))

    def frame(self, tickers, start, end, group_by="column") -> pd.DataFrame:
        lo, hi = pd.Timestamp(start), pd.Timestamp(end)  # end is exclusive, as in yfinance
        per_ticker, dead = {}, []
        for ticker in tickers:
            rows = self.prices[
                (self.prices["ticker"] == ticker)
                & (self.prices["date"] >= lo)
                & (self.prices["date"] < hi)
            ]
            per_ticker[ticker] = history_frame(rows) if len(rows) else dead_frame()
            if not len(rows):
                dead.append(ticker)
        if dead:
            YF_LOG.error(
                "%s: possibly delisted; no price data found (1d %s -> %s)", dead, start, end
            )
        return yf_frame(per_ticker, group_by=self.group_by or group_by)


class UpperBound:
    """An rng whose ``uniform(a, b)`` is ``b``: makes full-jitter sleeps equal their caps."""

    def uniform(self, a: float, b: float) -> float:
        return b


def expected(prices: pd.DataFrame, tickers, start, end) -> pd.DataFrame:
    out = prices[
        prices["ticker"].isin(tickers) & (prices["date"] >= start) & (prices["date"] <= end)
    ]
    return out.reset_index(drop=True)


def assert_prices_equal(got: pd.DataFrame, want: pd.DataFrame) -> None:
    assert list(got.columns) == list(PRICE_COLUMNS)
    pd.testing.assert_frame_equal(got, want, check_dtype=True, rtol=1e-12)


# --------------------------------------------------------------------------- frame shape


def test_helper_matches_real_yfinance_download(monkeypatch, sample_prices):
    """Guard the fake: yfinance's own download(), with only Ticker.history faked, agrees."""
    yf_multi = pytest.importorskip("yfinance.multi")
    if not hasattr(yf_multi, "Ticker"):
        pytest.skip("yfinance internals changed: multi.Ticker is gone")
    rows = expected(sample_prices, ["AAPL"], "2012-01-03", "2012-01-31")
    frames = {"AAPL": history_frame(rows), "DEAD": dead_frame()}

    class FakeTicker:
        def __init__(self, ticker: str) -> None:
            self.ticker = ticker
            self._price_history = type("PH", (), {"_last_error": None})()

        def history(self, **kwargs):
            return frames[self.ticker]

    monkeypatch.setattr(yf_multi, "Ticker", FakeTicker)
    import yfinance

    for group_by in ("column", "ticker"):
        real = yfinance.download(
            ["AAPL", "DEAD"], start="2012-01-03", end="2012-02-01", group_by=group_by,
            auto_adjust=True, actions=False, threads=True, progress=False,
        )  # fmt: skip
        mine = yf_frame(frames, group_by=group_by)
        if group_by == "ticker":  # ticker order follows thread completion there
            real = real.reindex(columns=mine.columns)
        pd.testing.assert_frame_equal(real, mine)


@pytest.mark.parametrize("group_by", ["column", "ticker"])
def test_parse_both_layouts_with_dead_ticker(sample_prices, group_by):
    tickers = ["AAPL", "MSFT", "^GSPC"]
    want = expected(sample_prices, tickers, "2012-01-03", "2012-03-30")
    per_ticker = {t: history_frame(want[want["ticker"] == t]) for t in tickers}
    per_ticker["DEAD"] = dead_frame()
    raw = yf_frame(per_ticker, group_by=group_by)
    assert raw.columns.names == (
        ["Price", "Ticker"] if group_by == "column" else ["Ticker", "Price"]
    )

    got, missing = frame_from_download(raw, [*tickers, "DEAD"])

    assert missing == {"DEAD": NO_DATA}
    assert_prices_equal(got, want)


def test_parse_tz_aware_index_and_flat_single_ticker(sample_prices):
    want = expected(sample_prices, ["IBM"], "2012-03-01", "2012-04-30")
    hist = history_frame(want)
    tz_aware = yf_frame({"IBM": hist}, ignore_tz=False)
    assert str(tz_aware.index.tz) == TZ
    got, missing = frame_from_download(tz_aware, ["IBM"])
    assert missing == {}
    assert_prices_equal(got, want)

    flat = yf_frame({"IBM": hist}).droplevel(1, axis=1).rename_axis(None, axis=1)
    got_flat, _ = frame_from_download(flat, ["ibm"])
    assert_prices_equal(got_flat, want)


def test_parse_drops_union_holes_but_keeps_other_tickers(sample_prices):
    want = expected(sample_prices, ["AAPL", "MSFT"], "2012-01-03", "2012-01-31")
    hole = pd.Timestamp("2012-01-10")
    msft = want[(want["ticker"] == "MSFT") & (want["date"] != hole)]
    raw = yf_frame(
        {"AAPL": history_frame(want[want["ticker"] == "AAPL"]), "MSFT": history_frame(msft)}
    )
    got, _ = frame_from_download(raw, ["AAPL", "MSFT"])
    assert hole in set(got.loc[got["ticker"] == "AAPL", "date"])
    assert hole not in set(got.loc[got["ticker"] == "MSFT", "date"])
    assert not got[["open", "high", "low", "close"]].isna().any().any()


def test_parse_ticker_named_like_a_field(sample_prices):
    """A ticker called OPEN must not confuse level detection (falls back to the 'Price' name)."""
    rows = expected(sample_prices, ["AAPL"], "2012-01-03", "2012-01-10")
    for group_by in ("column", "ticker"):
        raw = yf_frame({"OPEN": history_frame(rows)}, group_by=group_by)
        got, missing = frame_from_download(raw, ["OPEN"])
        assert missing == {}
        assert got["close"].tolist() == rows["close"].tolist()


# --------------------------------------------------------------------------- fetching


def test_fetch_passes_yfinance_arguments_and_reports_dead_ticker(sample_prices, caplog):
    fake = FakeYahoo(sample_prices)
    got, failed = fetch_yfinance(["AAPL", "DEAD"], "2012-01-03", "2012-01-31", download=fake)

    (call,) = fake.calls
    assert sorted(call["tickers"]) == ["AAPL", "DEAD"]
    assert call["start"] == "2012-01-03"
    assert call["end"] == "2012-02-01"  # yfinance's end is exclusive
    assert call["auto_adjust"] is True and call["actions"] is False
    assert call["progress"] is False and call["threads"] is True
    assert set(failed) == {"DEAD"}
    assert NO_DATA in failed["DEAD"] and "possibly delisted" in failed["DEAD"]
    assert_prices_equal(got, expected(sample_prices, ["AAPL"], "2012-01-03", "2012-01-31"))


def test_rate_limit_retried_with_growing_backoff(sample_prices):
    from yfinance.exceptions import YFRateLimitError

    fake = FakeYahoo(sample_prices, fail=lambda n, _: YFRateLimitError() if n <= 2 else None)
    sleeps: list[float] = []
    got, failed = fetch_yfinance(
        ["AAPL", "MSFT"], "2012-01-03", "2012-01-31", download=fake, sleep=sleeps.append,
        rng=UpperBound(), base_delay=1.0,
    )  # fmt: skip
    assert len(fake.calls) == 3
    assert sleeps == [1.0, 2.0]
    assert failed == {}
    assert set(got["ticker"]) == {"AAPL", "MSFT"}


def test_jittered_sleeps_stay_under_their_caps(sample_prices):
    fake = FakeYahoo(sample_prices, fail=lambda n, _: TimeoutError("slow") if n <= 4 else None)
    sleeps: list[float] = []
    fetch_yfinance(
        ["AAPL"], "2012-01-03", "2012-01-06", download=fake, sleep=sleeps.append,
        rng=random.Random(7), base_delay=0.5, max_retries=4,
    )  # fmt: skip
    caps = [0.5, 1.0, 2.0, 4.0]
    assert len(sleeps) == 4 and all(0 <= s <= c for s, c in zip(sleeps, caps, strict=True))


def test_logged_rate_limit_retries_only_the_affected_tickers(sample_prices):
    """yfinance 1.7 logs a rate limit and returns NaN columns instead of raising."""

    def fail(n: int, tickers: list[str]):
        if n == 1:
            YF_LOG.error("['MSFT']: YFRateLimitError('Too Many Requests. Rate limited.')")
            aapl = expected(sample_prices, ["AAPL"], "2012-01-03", "2012-01-31")
            return yf_frame({"AAPL": history_frame(aapl), "MSFT": dead_frame()})
        return None

    fake = FakeYahoo(sample_prices, fail=fail)
    sleeps: list[float] = []
    got, failed = fetch_yfinance(
        ["AAPL", "MSFT"], "2012-01-03", "2012-01-31", download=fake, sleep=sleeps.append
    )
    assert [c["tickers"] for c in fake.calls] == [["AAPL", "MSFT"], ["MSFT"]]
    assert len(sleeps) == 1
    assert failed == {}
    assert_prices_equal(got, expected(sample_prices, ["AAPL", "MSFT"], "2012-01-03", "2012-01-31"))


def test_batch_that_always_times_out_is_reported_others_load(sample_prices):
    import requests

    def fail(n: int, tickers: list[str]):
        return requests.exceptions.ReadTimeout("read timed out") if "IBM" in tickers else None

    fake = FakeYahoo(sample_prices, fail=fail)
    sleeps: list[float] = []
    got, failed = fetch_yfinance(
        ["AAPL", "MSFT", "IBM", "GOOG"], "2012-01-03", "2012-01-31", download=fake,
        batch_size=2, max_retries=2, sleep=sleeps.append,
    )  # fmt: skip
    assert set(failed) == {"IBM", "GOOG"}
    assert "ReadTimeout" in failed["IBM"] and "3 attempts" in failed["IBM"]
    assert set(got["ticker"]) == {"AAPL", "MSFT"}
    assert len(fake.calls) == 1 + 3 and len(sleeps) == 2


def test_everything_failing_on_network_raises_source_unavailable(sample_prices):
    fake = FakeYahoo(sample_prices, fail=lambda n, _: ConnectionError("no route to host"))
    with pytest.raises(SourceUnavailableError) as info:
        fetch_yfinance(
            ["AAPL", "MSFT"], "2012-01-03", "2012-01-31", download=fake, max_retries=1,
            sleep=lambda s: None,
        )  # fmt: skip
    assert "--source sample" in str(info.value)
    assert "cannot reach Yahoo Finance" in str(info.value)


def test_after_a_batch_is_lost_later_batches_get_one_try(sample_prices):
    fake = FakeYahoo(sample_prices, fail=lambda n, _: TimeoutError("timed out"))
    sleeps: list[float] = []
    with pytest.raises(SourceUnavailableError):
        fetch_yfinance(
            ["AAPL", "MSFT", "IBM"], "2012-01-03", "2012-01-31", download=fake, batch_size=1,
            max_retries=2, sleep=sleeps.append,
        )  # fmt: skip
    assert [c["tickers"] for c in fake.calls] == [["AAPL"]] * 3 + [["MSFT"], ["IBM"]]
    assert len(sleeps) == 2


def test_offline_yfinance_soft_failure_is_source_unavailable(sample_prices):
    """What yfinance 1.7 really does offline: no exception, empty frame, a logged DNSError."""

    def offline(n: int, tickers: list[str]):
        YF_LOG.error(
            "%s: DNSError('Failed to perform, curl: (6) Could not resolve host: "
            "query2.finance.yahoo.com.')",
            tickers,
        )
        return yf_frame({t: dead_frame() for t in tickers})

    fake = FakeYahoo(sample_prices, fail=offline)
    with pytest.raises(SourceUnavailableError, match="Could not resolve host"):
        fetch_yfinance(["AAPL"], "2012-01-03", "2012-01-31", download=fake, sleep=lambda s: None)
    assert len(fake.calls) == 5  # first try + 4 retries


def test_unexpected_error_is_reported_without_retries(sample_prices):
    fake = FakeYahoo(sample_prices, fail=lambda n, _: KeyError("chart"))
    sleeps: list[float] = []
    got, failed = fetch_yfinance(
        ["AAPL"], "2012-01-03", "2012-01-31", download=fake, sleep=sleeps.append
    )
    assert got.empty and sleeps == [] and len(fake.calls) == 1
    assert "download failed" in failed["AAPL"]


def test_batches_of_at_most_batch_size(sample_prices):
    aapl = expected(sample_prices, ["AAPL"], "2012-01-03", "2012-01-04")
    tickers = [f"T{i:03d}" for i in range(250)]

    def synthetic(n: int, batch: list[str]):
        return yf_frame({t: history_frame(aapl.assign(ticker=t)) for t in batch})

    fake = FakeYahoo(sample_prices, fail=synthetic)
    got, failed = fetch_yfinance(tickers, "2012-01-03", "2012-01-04", download=fake, batch_size=100)
    assert [len(c["tickers"]) for c in fake.calls] == [100, 100, 50]
    assert failed == {} and got["ticker"].nunique() == 250 and len(got) == 500


# --------------------------------------------------------------------------- cache


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home")


def cached_load(fake, settings, tickers, start, end, **kwargs):
    fetch = partial(fetch_yfinance, download=fake, sleep=lambda s: None)
    return load_with_cache(tickers, start, end, fetch, settings, now="2013-03-05 18:00", **kwargs)


def test_cache_fetches_only_new_sessions(sample_prices, settings):
    tickers = ["AAPL", "MSFT", "^GSPC"]
    fake = FakeYahoo(sample_prices)

    first, report = cached_load(fake, settings, tickers, "2012-01-03", "2012-06-29")
    assert [(c["start"], c["end"]) for c in fake.calls] == [("2012-01-03", "2012-06-30")]
    assert report.ok and report.loaded == tickers

    second, _ = cached_load(fake, settings, tickers, "2012-01-03", "2012-09-28")
    assert len(fake.calls) == 2  # one batched call for all three tickers
    assert fake.calls[1]["start"] == "2012-07-02"  # the session after 2012-06-29
    assert sorted(fake.calls[1]["tickers"]) == sorted(tickers)

    uncached, _ = fetch_yfinance(
        tickers, "2012-01-03", "2012-09-28", download=FakeYahoo(sample_prices)
    )
    assert_prices_equal(second, uncached)
    assert_prices_equal(first, expected(uncached, tickers, "2012-01-03", "2012-06-29"))

    third, _ = cached_load(fake, settings, tickers, "2012-03-01", "2012-09-28")
    assert len(fake.calls) == 2  # nothing new to fetch
    assert_prices_equal(third, expected(uncached, tickers, "2012-03-01", "2012-09-28"))

    files = sorted(p.name for p in cache_path(settings, "yfinance", "AAPL").parent.iterdir())
    assert files == ["%5EGSPC.parquet", "AAPL.parquet", "MSFT.parquet"]  # no temp files left


def test_cache_does_not_refetch_before_a_listing(sample_prices, settings):
    """GOOG listed 2004-08-19: asking from January must not re-ask for January every run."""
    fake = FakeYahoo(sample_prices)
    cached_load(fake, settings, ["GOOG"], "2004-01-02", "2004-12-31")
    again, report = cached_load(fake, settings, ["GOOG"], "2004-01-02", "2004-12-31")
    assert len(fake.calls) == 1
    assert again["date"].min() == pd.Timestamp("2004-08-19") and report.ok


def test_cache_earlier_start_before_listing_is_not_stale(sample_prices, settings):
    fake = FakeYahoo(sample_prices)
    cached_load(fake, settings, ["GOOG"], "2004-08-19", "2004-12-31")
    got, report = cached_load(fake, settings, ["GOOG"], "2004-01-02", "2005-06-30")
    assert [c["start"] for c in fake.calls] == ["2004-08-19", "2004-01-02", "2005-01-03"]
    assert report.ok, report.summary()
    assert_prices_equal(got, expected(sample_prices, ["GOOG"], "2004-01-02", "2005-06-30"))
    cached_load(fake, settings, ["GOOG"], "2004-01-02", "2005-06-30")
    assert len(fake.calls) == 3


def test_cache_fetches_an_earlier_head_once(sample_prices, settings):
    fake = FakeYahoo(sample_prices)
    cached_load(fake, settings, ["IBM"], "2012-06-01", "2012-06-29")
    got, _ = cached_load(fake, settings, ["IBM"], "2012-05-01", "2012-06-29")
    assert [(c["start"], c["end"]) for c in fake.calls][1] == ("2012-05-01", "2012-06-01")
    assert_prices_equal(got, expected(sample_prices, ["IBM"], "2012-05-01", "2012-06-29"))


def test_cache_returns_stale_rows_when_offline(sample_prices, settings):
    online = FakeYahoo(sample_prices)
    cached_load(online, settings, ["AAPL"], "2012-01-03", "2012-01-31")
    offline = FakeYahoo(sample_prices, fail=lambda n, _: ConnectionError("offline"))
    got, report = cached_load(offline, settings, ["AAPL"], "2011-12-01", "2012-02-29")
    assert got["date"].min() == pd.Timestamp("2012-01-03")
    assert got["date"].max() == pd.Timestamp("2012-01-31")
    assert set(report.stale) == {"AAPL"} and report.failed == {}
    # Two spans were missing (December and February), but once the first call
    # found Yahoo unreachable the second was not attempted.
    assert {(c["start"], c["end"]) for c in offline.calls} == {("2011-12-01", "2011-12-31")}

    with pytest.raises(SourceUnavailableError):
        cached_load(offline, settings, ["MSFT"], "2012-01-03", "2012-02-29")


def test_cache_caps_end_at_last_completed_session(sample_prices, settings):
    fake = FakeYahoo(sample_prices)
    fetch = partial(fetch_yfinance, download=fake)
    # 2013-03-01 was a Friday; at 10:00 on Monday 03-04 the last completed session is 03-01.
    load_with_cache(["AAPL"], "2013-02-25", "2013-03-08", fetch, settings, now="2013-03-04 10:00")
    assert fake.calls[0]["end"] == "2013-03-02"


def test_load_prices_yfinance_goes_through_cache(sample_prices, settings, monkeypatch):
    yfinance = pytest.importorskip("yfinance")
    fake = FakeYahoo(sample_prices)
    monkeypatch.setattr(yfinance, "download", fake)
    got, report = load_prices_with_report(
        "yfinance", ["aapl", "DEAD"], "2012-01-03", "2012-01-31", settings=settings
    )
    assert report.loaded == ["AAPL"] and set(report.failed) == {"DEAD"}
    assert_prices_equal(got, expected(sample_prices, ["AAPL"], "2012-01-03", "2012-01-31"))
    assert cache_path(settings, "yfinance", "AAPL").exists()


def test_load_prices_yfinance_needs_tickers(settings):
    with pytest.raises(ConfigError, match="needs tickers"):
        load_prices("yfinance", settings=settings)


# --------------------------------------------------------------------------- live


def _yahoo_reachable() -> bool:
    try:
        socket.create_connection(("query1.finance.yahoo.com", 443), timeout=3).close()
    except OSError:
        return False
    return True


@pytest.mark.network
def test_live_yfinance_download():
    if not _yahoo_reachable():
        pytest.skip("Yahoo Finance is not reachable from here")
    import yfinance

    raw = yfinance.download(["AAPL", "MSFT"], period="5d", auto_adjust=True, progress=False)
    got, missing = frame_from_download(raw, ["AAPL", "MSFT"])
    if missing:
        pytest.skip(f"Yahoo answered without data (rate limited?): {missing}")
    assert set(got["ticker"]) == {"AAPL", "MSFT"}
    assert list(got.columns) == list(PRICE_COLUMNS)
