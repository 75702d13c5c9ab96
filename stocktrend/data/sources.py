"""``load_prices``: one entry point for every price source.

A source spec is a string so that it can come from a CLI flag or an
environment variable (``STOCKTREND_SOURCE``):

* ``sample``: the real prices bundled with the package (offline, deterministic);
* ``file:PATH``: a local CSV/Parquet file or directory (see :mod:`.files`);
* ``yfinance``: Yahoo Finance, through the incremental cache in :mod:`.cache`.

Every source returns the same price frame (:mod:`.schema`). A ticker the
source lacks is reported, not raised: ``load_prices_with_report`` returns the
per-ticker :class:`SourceReport`, and ``load_prices`` logs it. Only a load
that yields nothing at all raises :class:`DataSourceError`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import partial

import pandas as pd

from stocktrend.config import Settings
from stocktrend.data.files import load_file_source
from stocktrend.data.sample import SAMPLE_PERIOD, SAMPLE_TICKERS, read_sample
from stocktrend.data.schema import (
    DateLike,
    LoadResult,
    build_report,
    check_range,
    filter_prices,
    preview,
    select_tickers,
    to_day,
    unique_tickers,
)
from stocktrend.errors import ConfigError, DataSourceError

logger = logging.getLogger(__name__)

VALID_SOURCES = ("sample", "file:PATH", "yfinance")
SOURCE_HINT = "use one of: 'sample', 'file:PATH' (CSV/Parquet file or directory), 'yfinance'"


def load_prices(
    source: str,
    tickers: Sequence[str] | None = None,
    start: DateLike | None = None,
    end: DateLike | None = None,
    *,
    settings: Settings | None = None,
) -> pd.DataFrame:
    """The price frame for ``tickers`` (None: all the source has) over inclusive ``[start, end]``.

    Tickers the source lacks are logged as a warning and left out; use
    :func:`load_prices_with_report` to act on them.
    """
    prices, report = load_prices_with_report(source, tickers, start, end, settings=settings)
    if not report.ok:
        logger.warning("%s", report.summary())
    return prices


def load_prices_with_report(
    source: str,
    tickers: Sequence[str] | None = None,
    start: DateLike | None = None,
    end: DateLike | None = None,
    *,
    settings: Settings | None = None,
) -> LoadResult:
    """Like :func:`load_prices`, returning ``(prices, report)``.

    Raises :class:`ConfigError` for an unknown source spec, an empty ticker
    list or ``start > end``, and :class:`DataSourceError` (or its
    ``SourceUnavailableError`` subclass) when no ticker yields any rows.
    """
    kind, argument = parse_source(source)
    names = None if tickers is None else unique_tickers(tickers)
    if names is not None and not names:
        raise ConfigError("no tickers given", hint="pass tickers, or none to load all")
    check_range(start, end)
    if kind == "yfinance":
        result = _load_yfinance(names, start, end, settings or Settings())
    elif kind == "sample":
        prices, failed = select_tickers(read_sample(), names, "sample")
        result = _finish("sample", names, prices, failed, start, end)
    else:
        prices, failed = load_file_source(argument, names)
        result = _finish(f"file:{argument}", names, prices, failed, start, end)
    if result.prices.empty:
        raise DataSourceError(
            f"no prices loaded from {source!r}: {result.report.summary()}",
            hint=_empty_hint(kind),
        )
    return result


def parse_source(spec: str) -> tuple[str, str]:
    """``(kind, argument)`` for a source spec; ConfigError listing the valid forms otherwise."""
    text = (spec or "").strip()
    lowered = text.lower()
    if lowered in {"sample", "yfinance"}:
        return lowered, ""
    if lowered.startswith("file:"):
        path = text[len("file:") :].strip()
        if path:
            return "file", path
        raise ConfigError("source 'file:' needs a path, e.g. file:prices.csv", hint=SOURCE_HINT)
    raise ConfigError(f"unknown price source {spec!r}", hint=SOURCE_HINT)


def _finish(
    label: str,
    names: list[str] | None,
    prices: pd.DataFrame,
    failed: dict[str, str],
    start: DateLike | None,
    end: DateLike | None,
) -> LoadResult:
    """Apply the date range and report tickers that have rows, but none inside it."""
    requested = names if names is not None else sorted(prices["ticker"].unique().tolist())
    spans = prices.groupby("ticker")["date"].agg(["min", "max"])
    in_range = filter_prices(prices, start=start, end=end)
    present = set(in_range["ticker"].unique().tolist())
    failed = dict(failed)
    for ticker in requested:
        if ticker not in present and ticker not in failed and ticker in spans.index:
            first, last = spans.loc[ticker, "min"], spans.loc[ticker, "max"]
            failed[ticker] = (
                f"no rows in {_range_text(start, end)} (has {first.date()}..{last.date()})"
            )
    return LoadResult(in_range, build_report(label, requested, in_range, failed))


def _load_yfinance(
    names: list[str] | None, start: DateLike | None, end: DateLike | None, settings: Settings
) -> LoadResult:
    if names is None:
        raise ConfigError(
            "the yfinance source needs tickers", hint="pass tickers, e.g. AAPL MSFT ^GSPC"
        )
    # Imported here: the cache pulls in the NYSE calendar, which only this source needs.
    from stocktrend.data.cache import load_with_cache
    from stocktrend.data.yahoo import fetch_yfinance

    fetch = partial(
        fetch_yfinance,
        batch_size=settings.yfinance_batch_size,
        max_retries=settings.yfinance_max_retries,
    )
    return load_with_cache(names, start, end, fetch, settings, source="yfinance")


def _range_text(start: DateLike | None, end: DateLike | None) -> str:
    lo = "..." if start is None else str(to_day(start).date())
    hi = "..." if end is None else str(to_day(end).date())
    return f"{lo}..{hi}"


def _empty_hint(kind: str) -> str:
    if kind == "sample":
        return (
            f"the sample has {preview(list(SAMPLE_TICKERS))} "
            f"from {SAMPLE_PERIOD[0]} to {SAMPLE_PERIOD[1]}"
        )
    if kind == "file":
        return "check the tickers and dates against the file's contents"
    return "check the tickers on finance.yahoo.com, or use --source sample or --source file:PATH"
