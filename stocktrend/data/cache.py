"""An incremental per-ticker Parquet cache, so a daily run downloads only new sessions.

Layout: ``<cache_dir>/prices/<source>/<TICKER>.parquet``, the ticker URL-quoted
(``^GSPC`` -> ``%5EGSPC.parquet``). Each file is a price frame for one ticker
plus a ``stocktrend.cache`` schema-metadata record whose ``covered_start`` is
the earliest date already asked of the source. That date matters for tickers
listed after the requested start (GOOG in 2004): without it every run would
ask again for the years before the listing.

What is fetched for a ticker: the NYSE sessions of ``[start, end]`` before
``covered_start`` and after the last cached date. Holes inside the cached span
are left alone, or a ticker with a real gap (a halt) would be refetched every
day. Tickers missing the same span go to the source in one call, so a daily
run makes one batched download. Files are replaced atomically (temp file +
``os.replace``), so a crash never leaves half a file.

``end`` is capped at the last completed NYSE session: a bar fetched while the
market is open is not final, and the cache would otherwise keep it forever.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from stocktrend import calendar
from stocktrend.atomic import atomic_write
from stocktrend.config import Settings
from stocktrend.data.schema import (
    DateLike,
    LoadResult,
    build_report,
    empty_prices,
    filter_prices,
    normalize_prices,
    to_day,
    unique_tickers,
)
from stocktrend.data.yahoo import means_no_data
from stocktrend.errors import ConfigError, SourceUnavailableError

logger = logging.getLogger(__name__)

CACHE_META_KEY = b"stocktrend.cache"
EARLIEST = pd.Timestamp("1990-01-01")
"""The calendar's first day: the cache cannot reason about sessions before it."""

Fetch = Callable[[list[str], pd.Timestamp, pd.Timestamp], tuple[pd.DataFrame, dict[str, str]]]
"""``fetch(tickers, first_session, last_session) -> (prices, {ticker: reason})``."""

Span = tuple[pd.Timestamp, pd.Timestamp]


@dataclass(frozen=True)
class CacheEntry:
    """One ticker's cached rows and the earliest date already asked of the source."""

    prices: pd.DataFrame
    covered_start: pd.Timestamp | None

    @property
    def first(self) -> pd.Timestamp | None:
        """Start of the known span: ``covered_start``, else the first cached date."""
        if self.covered_start is not None:
            return self.covered_start
        return None if self.prices.empty else self.prices["date"].iloc[0]

    @property
    def last(self) -> pd.Timestamp | None:
        return None if self.prices.empty else self.prices["date"].iloc[-1]


def cache_path(settings: Settings, source: str, ticker: str) -> Path:
    """Where ``ticker``'s rows from ``source`` live; quoting makes ``^GSPC`` a safe name."""
    folder = settings.cache_dir / "prices" / quote(source, safe="")
    return folder / f"{quote(ticker, safe='')}.parquet"


def read_cache(path: Path) -> CacheEntry:
    """The cached entry at ``path``; empty when absent or unreadable (it is then rebuilt)."""
    if not path.exists():
        return CacheEntry(empty_prices(), None)
    try:
        table = pq.read_table(path)
        prices = normalize_prices(table.to_pandas())
    except Exception as exc:  # a corrupt cache file must cost a refetch, not a failed run
        logger.warning("ignoring unreadable cache file %s: %s", path, exc)
        return CacheEntry(empty_prices(), None)
    record = json.loads((table.schema.metadata or {}).get(CACHE_META_KEY, b"{}"))
    covered = record.get("covered_start")
    return CacheEntry(prices, pd.Timestamp(covered) if covered else None)


def write_cache(path: Path, entry: CacheEntry) -> None:
    """Write ``entry`` to ``path`` atomically: a temp file in the same folder, then replace."""
    table = pa.Table.from_pandas(entry.prices, preserve_index=False)
    record = {"covered_start": None if entry.first is None else entry.first.strftime("%Y-%m-%d")}
    metadata = {**(table.schema.metadata or {}), CACHE_META_KEY: json.dumps(record).encode()}
    table = table.replace_schema_metadata(metadata)
    atomic_write(path, lambda handle: pq.write_table(table, handle))


def missing_spans(entry: CacheEntry, wanted: pd.DatetimeIndex) -> list[Span]:
    """The runs of ``wanted`` sessions before the known span and after the last cached date."""
    if len(wanted) == 0:
        return []
    first, last = entry.first, entry.last
    if first is None or last is None:
        return [(wanted[0], wanted[-1])]
    spans = []
    head = wanted[wanted < first]
    if len(head):
        spans.append((head[0], head[-1]))
    tail = wanted[wanted > last]
    if len(tail):
        spans.append((tail[0], tail[-1]))
    return spans


def load_with_cache(
    tickers: Sequence[str],
    start: DateLike | None,
    end: DateLike | None,
    fetch: Fetch,
    settings: Settings,
    *,
    source: str = "yfinance",
    now: DateLike | None = None,
) -> LoadResult:
    """Prices for ``tickers`` over inclusive ``[start, end]``, fetching only what is not cached.

    ``start`` defaults to 1990-01-01 (earlier dates are clamped to it), ``end``
    to the last completed session at ``now`` (default: the current time).
    Tickers whose refresh failed but which have cached rows are returned and
    listed in ``report.stale``. A :class:`SourceUnavailableError` from
    ``fetch`` is re-raised only when no ticker has any rows to return.
    """
    names = unique_tickers(tickers)
    if not names:
        raise ConfigError("no tickers given", hint="pass at least one ticker")
    lo, hi = _bounds(start, end, now)
    wanted = calendar.sessions(lo, hi) if lo <= hi else pd.DatetimeIndex([], name="date")

    entries = {t: read_cache(cache_path(settings, source, t)) for t in names}
    groups: dict[Span, list[str]] = {}
    for ticker, entry in entries.items():
        for span in missing_spans(entry, wanted):
            groups.setdefault(span, []).append(ticker)
    failures, unavailable = _fill(entries, groups, fetch, lambda t: cache_path(settings, source, t))

    parts = [filter_prices(e.prices, start=lo, end=hi) for e in entries.values()]
    parts = [p for p in parts if not p.empty]
    prices = normalize_prices(pd.concat(parts, ignore_index=True)) if parts else empty_prices()
    if prices.empty and unavailable is not None:
        raise unavailable
    stale = {
        t: f"could not refresh ({r}); cached rows end {entries[t].last.date()}"
        for t, r in failures.items()
        if entries[t].last is not None
    }
    for ticker in names:
        failures.setdefault(ticker, f"no rows for {lo.date()}..{hi.date()}")
    return LoadResult(prices, build_report(source, names, prices, failures, stale))


def _fill(
    entries: dict[str, CacheEntry],
    groups: dict[Span, list[str]],
    fetch: Fetch,
    path_of: Callable[[str], Path],
) -> tuple[dict[str, str], SourceUnavailableError | None]:
    """Fetch each missing span once for its group, updating ``entries`` and their files.

    Returns ``{ticker: reason}`` for spans that yielded nothing, and the first
    :class:`SourceUnavailableError` seen; after one, later spans are not asked.
    """
    failures: dict[str, str] = {}
    unavailable: SourceUnavailableError | None = None
    for span, group in sorted(groups.items()):
        fetched, failed = empty_prices(), {}
        if unavailable is None:
            try:
                fetched, failed = fetch(group, span[0], span[1])
            except SourceUnavailableError as exc:
                unavailable = exc
        if unavailable is not None and fetched.empty:
            failed = dict.fromkeys(group, unavailable.args[0])
        fetched = filter_prices(fetched, group, span[0], span[1])
        for ticker in group:
            entry = entries[ticker]
            rows = fetched[fetched["ticker"] == ticker]
            reason = failed.get(ticker, "no rows returned")
            # Sessions before a ticker's first cached date that the source says it has
            # no rows for are before its listing: remember that, do not report it.
            no_history = _is_head(entry, span) and means_no_data(reason)
            updated = _merge(entry, rows, span, no_history)
            if updated is not entry:
                entries[ticker] = updated
                _write_quietly(path_of(ticker), updated)
            if rows.empty and not no_history:
                failures[ticker] = reason
    return failures, unavailable


def _write_quietly(path: Path, entry: CacheEntry) -> None:
    """Write a cache file; a full or read-only disk costs the cache, not the run."""
    try:
        write_cache(path, entry)
    except OSError as exc:
        logger.warning("cannot write price cache %s: %s", path, exc)


def _bounds(
    start: DateLike | None, end: DateLike | None, now: DateLike | None
) -> tuple[pd.Timestamp, pd.Timestamp]:
    latest = calendar.last_completed_session(now)
    lo = EARLIEST if start is None else to_day(start)
    if lo < EARLIEST:
        logger.warning("start %s is before %s: the cache starts there", lo.date(), EARLIEST.date())
        lo = EARLIEST
    hi = latest if end is None else min(to_day(end), latest)
    return lo, hi


def _is_head(entry: CacheEntry, span: Span) -> bool:
    """True when ``span`` lies before the cached rows (a ticker's early history)."""
    return entry.last is not None and span[1] < entry.last


def _merge(entry: CacheEntry, rows: pd.DataFrame, span: Span, no_history: bool) -> CacheEntry:
    """``entry`` with fetched ``rows`` added (fetched rows win on equal dates).

    ``covered_start`` moves back to the span start when rows came back, or when
    the source answered that there is nothing there (``no_history``), but never
    after a transient failure, so the span is asked again next run.
    """
    if rows.empty and not no_history:
        return entry
    combined = pd.concat([entry.prices, rows], ignore_index=True)
    combined = combined.drop_duplicates(subset=["ticker", "date"], keep="last")
    prices = normalize_prices(combined)
    first = entry.first
    covered = span[0] if first is None or span[0] < first else first
    return CacheEntry(prices, covered)
