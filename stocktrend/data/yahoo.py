"""Yahoo Finance through ``yfinance``: batched, retried, and honest about failures.

``yfinance.download`` rarely raises. In yfinance 1.7 a ticker that fails
(delisted, unknown, DNS failure, rate limit) comes back as all-NaN columns, and
the reason only reaches the ``yfinance`` logger. So this adapter

* reads the frame whatever its column layout (``group_by="column"`` gives
  ``(Price, Ticker)`` columns, ``group_by="ticker"`` gives ``(Ticker, Price)``,
  ``multi_level_index=False`` gives flat columns for one ticker) by finding the
  level that holds field names instead of trusting the order;
* listens to the ``yfinance`` logger during the call (and reads
  ``yfinance.shared._ERRORS`` where an older version fills it) to attach a
  reason to each empty ticker;
* retries rate limits and network errors, raised or merely logged, with
  exponential backoff and full jitter; and
* raises :class:`SourceUnavailableError` only when nothing at all could be
  fetched because of the network, so an offline run says how to go on.

``yfinance`` is imported only when a download actually happens.
"""

from __future__ import annotations

import ast
import logging
import random
import re
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
import pandas as pd

from stocktrend.data.schema import (
    PRICE_FIELDS,
    DateLike,
    apply_adj_close,
    empty_prices,
    filter_prices,
    normalize_prices,
    to_day,
    unique_tickers,
)
from stocktrend.errors import ConfigError, SourceUnavailableError

logger = logging.getLogger(__name__)

NO_DATA = "no data returned: delisted or unknown ticker?"
NO_ROWS = "no rows in the requested range"
UNAVAILABLE_HINT = "use --source sample or --source file:PATH"

FIELD_NAMES = frozenset(
    {
        "open",
        "high",
        "low",
        "close",
        "adj close",
        "volume",
        "dividends",
        "stock splits",
        "capital gains",
        "repaired?",
    }
)
"""Column names yfinance uses for fields, lower-cased (how the field level is recognised)."""

Kind = Literal["network", "rate_limit", "no_data", "error"]
RETRYABLE: frozenset[str] = frozenset({"network", "rate_limit"})

_RATE_LIMIT_TEXT = re.compile(r"RateLimit|Too Many Requests|Rate limited|\b429\b", re.IGNORECASE)
_NETWORK_TEXT = re.compile(
    r"timeout|timed out|ConnectionError|DNSError|resolve host|Failed to perform|curl: \(\d+\)"
    r"|RemoteDisconnected|ChunkedEncoding|SSLError|ProxyError|Network is unreachable"
    r"|Connection (?:refused|reset|aborted)",
    re.IGNORECASE,
)
_NETWORK_EXCEPTIONS = frozenset(
    {"Timeout", "ConnectTimeout", "ReadTimeout", "ConnectionError", "ChunkedEncodingError"}
)

Download = Callable[..., Any]
Sleep = Callable[[float], None]


@dataclass(frozen=True)
class _Failure:
    reason: str
    kind: Kind


# --------------------------------------------------------------------------- fetching


def fetch_yfinance(
    tickers: Sequence[str],
    start: DateLike | None,
    end: DateLike | None,
    *,
    batch_size: int = 100,
    max_retries: int = 4,
    download: Download | None = None,
    sleep: Sleep = time.sleep,
    rng: random.Random | None = None,
    base_delay: float = 1.0,
    max_delay: float = 60.0,
) -> tuple[pd.DataFrame, dict[str, str]]:
    """Daily adjusted prices for ``tickers`` over inclusive ``[start, end]`` from Yahoo.

    Returns ``(prices, failures)`` where ``failures`` maps each ticker that
    yielded no rows to a reason. Tickers go to ``download`` (default
    ``yfinance.download``) in batches of at most ``batch_size``; a batch that
    hits rate limits or network errors is retried up to ``max_retries`` times,
    sleeping a random ``[0, min(max_delay, base_delay * 2**n))`` seconds before
    retry ``n`` (full jitter keeps many clients from retrying in step). Once a
    whole batch is lost that way, later batches get a single try each.

    Raises :class:`SourceUnavailableError` when no ticker could be loaded and
    every failure was a network error or rate limit.
    """
    names = unique_tickers(tickers)
    if not names:
        raise ConfigError("no tickers given for yfinance", hint="pass at least one ticker")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    retry = _RetryPolicy(max(0, max_retries), base_delay, max_delay, sleep, rng or random.Random())
    call = download or _yfinance_download
    start_arg = to_day(start).strftime("%Y-%m-%d") if start is not None else None
    # yfinance's end is exclusive: ask for the day after the last session wanted.
    end_arg = (to_day(end) + pd.Timedelta(days=1)).strftime("%Y-%m-%d") if end is not None else None

    frames: list[pd.DataFrame] = []
    failures: dict[str, _Failure] = {}
    for offset in range(0, len(names), batch_size):
        batch = names[offset : offset + batch_size]
        got, failed = _fetch_batch(batch, start_arg, end_arg, call, retry)
        frames.append(got)
        failures.update(failed)
        if got.empty and failed and all(f.kind in RETRYABLE for f in failed.values()):
            # A whole batch lost to the network after every retry: give the remaining
            # batches one try each, so an offline run fails in seconds, not minutes.
            retry = replace(retry, max_retries=0)

    prices = (
        normalize_prices(pd.concat(frames, ignore_index=True), drop_empty=True)
        if frames
        else empty_prices()
    )
    prices = filter_prices(prices, start=start, end=end)
    present = set(prices["ticker"].unique().tolist())
    for ticker in names:
        if ticker not in present and ticker not in failures:
            failures[ticker] = _Failure(NO_ROWS, "no_data")
    _raise_if_unreachable(prices, failures)
    return prices, {t: f.reason for t, f in failures.items() if t not in present}


def _yfinance_download(tickers: list[str], **kwargs: Any) -> Any:
    """``yfinance.download``, imported here so importing stocktrend never imports yfinance."""
    import yfinance

    return yfinance.download(tickers, **kwargs)


@dataclass(frozen=True)
class _RetryPolicy:
    max_retries: int
    base_delay: float
    max_delay: float
    sleep: Sleep
    rng: random.Random

    def wait(self, retry_number: int) -> None:
        """Sleep before retry ``retry_number`` (0-based): full jitter over a doubling cap."""
        cap = min(self.max_delay, self.base_delay * (2.0**retry_number))
        self.sleep(self.rng.uniform(0.0, cap))


def _fetch_batch(
    batch: list[str],
    start: str | None,
    end: str | None,
    download: Download,
    retry: _RetryPolicy,
) -> tuple[pd.DataFrame, dict[str, _Failure]]:
    """One batch with retries; only tickers that failed transiently are asked again."""
    pending = list(batch)
    frames: list[pd.DataFrame] = []
    failures: dict[str, _Failure] = {}
    last: dict[str, _Failure] = {}
    for attempt in range(retry.max_retries + 1):
        if attempt:
            retry.wait(attempt - 1)
        try:
            raw, logged = _call_download(download, pending, start, end)
        except Exception as exc:  # yfinance and its HTTP stacks raise many types
            kind = _exception_kind(exc)
            if kind is None:
                logger.warning("yfinance download failed for %s", pending, exc_info=True)
                failed = _Failure(f"download failed: {exc!r}", "error")
                failures.update(dict.fromkeys(pending, failed))
                return _concat(frames), failures
            logger.info("yfinance %s on attempt %d: %r", kind, attempt + 1, exc)
            last = {t: _Failure(_describe(kind, repr(exc)), kind) for t in pending}
            continue
        got, missing = frame_from_download(raw, pending)
        frames.append(got)
        pending, last = [], {}
        for ticker, reason in missing.items():
            failure = _soft_failure(reason, logged.get(ticker))
            if failure.kind in RETRYABLE:
                pending.append(ticker)
                last[ticker] = failure
            else:
                failures[ticker] = failure
        if not pending:
            break
    for ticker in pending:
        failure = last[ticker]
        reason = f"{failure.reason} (gave up after {retry.max_retries + 1} attempts)"
        failures[ticker] = _Failure(reason, failure.kind)
    return _concat(frames), failures


def _call_download(
    download: Download, tickers: list[str], start: str | None, end: str | None
) -> tuple[Any, dict[str, str]]:
    """Run one download, returning the raw frame and the per-ticker errors yfinance logged."""
    with _capture_yfinance_log() as messages:
        raw = download(
            list(tickers),
            start=start,
            end=end,
            auto_adjust=True,
            actions=False,
            group_by="column",
            threads=True,
            progress=False,
        )
    reasons = _reasons_from_log(messages, tickers)
    shared = sys.modules.get("yfinance.shared")  # yfinance < 1.0 records errors here
    for ticker, reason in (getattr(shared, "_ERRORS", None) or {}).items():
        if str(ticker).upper() in tickers:
            reasons.setdefault(str(ticker).upper(), str(reason))
    return raw, reasons


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    frames = [f for f in frames if not f.empty]
    return pd.concat(frames, ignore_index=True) if frames else empty_prices()


def _raise_if_unreachable(prices: pd.DataFrame, failures: dict[str, _Failure]) -> None:
    if not prices.empty or not failures:
        return
    kinds = {f.kind for f in failures.values()}
    if not kinds <= RETRYABLE:
        return
    example = next(iter(failures.values())).reason
    what = "is rate-limiting requests" if kinds == {"rate_limit"} else "cannot be reached"
    raise SourceUnavailableError(
        f"cannot reach Yahoo Finance: it {what} ({len(failures)} tickers failed, e.g. {example})",
        hint=UNAVAILABLE_HINT,
    )


# --------------------------------------------------------------------------- error reasons


def _exception_kind(exc: BaseException) -> Kind | None:
    """``rate_limit``/``network`` for errors worth retrying, None for anything else.

    Matching class names along the MRO recognises ``YFRateLimitError`` and the
    requests/curl_cffi timeout classes without importing those packages.
    """
    names = {cls.__name__ for cls in type(exc).__mro__}
    if "YFRateLimitError" in names:
        return "rate_limit"
    if isinstance(exc, OSError) or names & _NETWORK_EXCEPTIONS:
        return "network"
    return None


def _text_kind(text: str) -> Kind:
    if _RATE_LIMIT_TEXT.search(text):
        return "rate_limit"
    if _NETWORK_TEXT.search(text):
        return "network"
    return "no_data"


def means_no_data(reason: str) -> bool:
    """True when a failure reason says Yahoo answered but has no rows (not that it failed).

    The cache uses this to tell "there is no history before this date"
    (remember it) from "Yahoo could not be asked" (ask again next run).
    """
    return reason.startswith((NO_DATA, NO_ROWS))


def _describe(kind: Kind, detail: str) -> str:
    prefix = {"rate_limit": "rate limited", "network": "network error"}.get(kind, "error")
    return f"{prefix}: {detail}"


def _soft_failure(reason: str, logged: str | None) -> _Failure:
    """A ticker that came back empty: classify by what yfinance logged about it."""
    if not logged:
        return _Failure(reason, "no_data")
    kind = _text_kind(logged)
    if kind in RETRYABLE:
        return _Failure(_describe(kind, logged), kind)
    return _Failure(f"{reason} (yfinance: {logged})", "no_data")


class _Collector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.messages.append(record.getMessage())
        except Exception:  # a malformed third-party record must not break a download
            self.handleError(record)


@contextmanager
def _capture_yfinance_log() -> Iterator[list[str]]:
    """Collect what yfinance logs during one call (its only report of per-ticker errors)."""
    collector = _Collector()
    yf_logger = logging.getLogger("yfinance")
    yf_logger.addHandler(collector)
    try:
        yield collector.messages
    finally:
        yf_logger.removeHandler(collector)


_LIST_LINE = re.compile(r"^\s*(\[[^\]]*\]):\s*(.+)$", re.DOTALL)
_FAILED_TO_GET = re.compile(r"Failed to get ticker '([^']+)' reason:\s*(.+)$", re.DOTALL)
_TICKER_LINE = re.compile(r"^\s*\$?([A-Za-z0-9.^=\-]+):\s*(.+)$", re.DOTALL)


def _reasons_from_log(messages: list[str], tickers: Sequence[str]) -> dict[str, str]:
    """Per-ticker reasons from yfinance log lines such as ``['AAPL', 'X']: DNSError(...)``."""
    wanted = set(tickers)
    reasons: dict[str, str] = {}
    for message in messages:
        for ticker, reason in _parse_log_line(message):
            ticker = ticker.upper()
            if ticker in wanted:
                reasons[ticker] = reason.strip()
    return reasons


def _parse_log_line(message: str) -> list[tuple[str, str]]:
    if match := _LIST_LINE.match(message):
        try:
            symbols = ast.literal_eval(match.group(1))
        except (ValueError, SyntaxError):
            return []
        return [(str(s), match.group(2)) for s in symbols]
    if match := _FAILED_TO_GET.search(message):
        return [(match.group(1), match.group(2))]
    if match := _TICKER_LINE.match(message):
        return [(match.group(1), match.group(2))]
    return []


# --------------------------------------------------------------------------- parsing


def frame_from_download(raw: Any, tickers: Sequence[str]) -> tuple[pd.DataFrame, dict[str, str]]:
    """Turn a ``yfinance.download`` result into a price frame plus ``{ticker: reason}``.

    Accepts either MultiIndex layout, flat columns for a single ticker, a
    tz-aware or naive DatetimeIndex (or a ``Date`` column), and an
    ``Adj Close`` column (applied as an adjustment when present). A ticker that
    is absent or whose prices are all NaN is reported, never raised.
    """
    names = unique_tickers(tickers)
    if not isinstance(raw, pd.DataFrame) or raw.shape[1] == 0:
        return empty_prices(), dict.fromkeys(names, NO_DATA)
    frame = _with_session_index(raw)
    columns = _columns_by_ticker(frame, names)
    parts: list[pd.DataFrame] = []
    missing: dict[str, str] = {}
    for ticker in names:
        sub = columns.get(ticker)
        part = _ticker_rows(sub, ticker) if sub is not None else None
        if part is None or part.empty:
            missing[ticker] = NO_DATA
        else:
            parts.append(part)
    prices = (
        normalize_prices(pd.concat(parts, ignore_index=True), drop_empty=True)
        if parts
        else empty_prices()
    )
    return prices, missing


def tickers_in_download(raw: pd.DataFrame) -> list[str]:
    """The tickers named in a two-level yfinance frame (empty for flat columns)."""
    columns = raw.columns
    if not isinstance(columns, pd.MultiIndex) or columns.nlevels != 2:
        return []
    level = 1 - _field_level(columns)
    return unique_tickers(str(v) for v in columns.get_level_values(level).unique())


def _with_session_index(raw: pd.DataFrame) -> pd.DataFrame:
    """The frame indexed by naive session dates (midnight, no timezone)."""
    frame = raw
    if not isinstance(frame.index, pd.DatetimeIndex):
        date_column = _flat_date_column(frame)
        if date_column is not None:
            frame = frame.set_index(date_column)
        try:
            parsed = pd.to_datetime(frame.index)
        except ValueError:  # text with mixed UTC offsets (DST): read as instants in New York
            parsed = pd.to_datetime(frame.index, utc=True).tz_convert("America/New_York")
        frame = frame.set_axis(parsed, axis=0)
    index = pd.DatetimeIndex(frame.index)
    if index.tz is not None:
        # Daily bars are stamped at midnight exchange time: the wall-clock date is the session.
        index = index.tz_localize(None)
    return frame.set_axis(index.normalize(), axis=0)


def _flat_date_column(frame: pd.DataFrame) -> Any:
    if isinstance(frame.columns, pd.MultiIndex):
        return None
    for column in frame.columns:
        if str(column).strip().lower() in {"date", "datetime"}:
            return column
    return None


def _columns_by_ticker(frame: pd.DataFrame, tickers: list[str]) -> dict[str, pd.DataFrame]:
    """``{ticker: frame with lower-case field columns}`` for whichever layout came back."""
    columns = frame.columns
    if isinstance(columns, pd.MultiIndex):
        if columns.nlevels != 2:
            return {}
        field_level = _field_level(columns)
        ticker_values = columns.get_level_values(1 - field_level).astype("str").str.upper()
        field_values = columns.get_level_values(field_level).astype("str").str.strip().str.lower()
        out = {}
        for ticker in tickers:
            mask = np.asarray(ticker_values == ticker)
            if mask.any():
                out[ticker] = frame.loc[:, mask].set_axis(list(field_values[mask]), axis=1)
        return out
    lowered = [str(c).strip().lower() for c in columns]
    if len(tickers) == 1 and {"close"} <= set(lowered):
        return {tickers[0]: frame.set_axis(lowered, axis=1)}
    return {}


def _field_level(columns: pd.MultiIndex) -> int:
    """Which of two column levels holds field names (Open, Close, ...)?

    Scored by the share of values that are field names; a tie (say, the only
    ticker is ``OPEN``) falls back to the level named ``Price``, then to level
    0, which is where ``group_by="column"`` puts the fields.
    """
    scores = []
    for level in (0, 1):
        values = columns.get_level_values(level).unique()
        hits = sum(str(v).strip().lower() in FIELD_NAMES for v in values)
        scores.append(hits / max(len(values), 1))
    if scores[0] != scores[1]:
        return 0 if scores[0] > scores[1] else 1
    level_names = [str(n).lower() if n is not None else "" for n in columns.names]
    return level_names.index("price") if "price" in level_names else 0


def _ticker_rows(sub: pd.DataFrame, ticker: str) -> pd.DataFrame | None:
    """Long rows for one ticker; None when its price columns are missing."""
    sub = sub.loc[:, ~sub.columns.duplicated()]
    if not set(PRICE_FIELDS) <= set(sub.columns):
        return None
    rows = pd.DataFrame(
        {
            "date": sub.index,
            "ticker": ticker,
            **{name: sub[name].to_numpy() for name in PRICE_FIELDS},
            "volume": sub["volume"].to_numpy() if "volume" in sub.columns else float("nan"),
        }
    )
    if "adj close" in sub.columns and sub["adj close"].notna().any():
        rows["adj close"] = sub["adj close"].to_numpy()
        rows = apply_adj_close(rows)
    rows = rows[rows[list(PRICE_FIELDS)].notna().any(axis=1)]
    return rows.reset_index(drop=True)
