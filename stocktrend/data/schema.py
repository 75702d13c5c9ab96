"""The price frame: the one shape every price source returns.

A long frame, one row per (ticker, session):

=========  ==========================  =============================================
column     dtype                       meaning
=========  ==========================  =============================================
date       datetime64[ns], naive       the NYSE session date (midnight, no timezone)
ticker     str                         upper-case symbol, e.g. ``AAPL``, ``^GSPC``
open       float64                     split-and-dividend adjusted
high       float64                     split-and-dividend adjusted
low        float64                     split-and-dividend adjusted
close      float64                     split-and-dividend adjusted
volume     float64                     shares (float so that gaps can be NaN)
=========  ==========================  =============================================

sorted by ticker then date, with a fresh RangeIndex. Sources build whatever
they read into this with :func:`normalize_prices`, so downstream code (features,
windows, scoring) never has to care where the prices came from.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import NamedTuple

import numpy as np
import pandas as pd

from stocktrend.errors import ConfigError, PriceValidationError

logger = logging.getLogger(__name__)

PRICE_COLUMNS: tuple[str, ...] = ("date", "ticker", "open", "high", "low", "close", "volume")
"""Columns of a price frame, in order."""

PRICE_FIELDS: tuple[str, ...] = ("open", "high", "low", "close")
"""The adjusted price columns (a row with all of them NaN carries no information)."""

DateLike = str | date | datetime | pd.Timestamp


@dataclass
class SourceReport:
    """What a load asked for and what it got, per ticker.

    Missing tickers are reported here rather than raised, because a batch run
    over 500 symbols should score the 499 it has and say which one it lacked.
    """

    source: str
    requested: list[str]
    loaded: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    """ticker -> why nothing was loaded for it."""
    stale: dict[str, str] = field(default_factory=dict)
    """ticker -> why cached rows were returned without the newest sessions."""

    @property
    def ok(self) -> bool:
        """True when every requested ticker was loaded and none is stale."""
        return not self.failed and not self.stale

    def summary(self) -> str:
        """One line for logs: counts plus the first few failures."""
        text = f"{self.source}: loaded {len(self.loaded)}/{len(self.requested)} tickers"
        if self.failed:
            shown = "; ".join(f"{t}: {r}" for t, r in list(self.failed.items())[:5])
            more = f" (+{len(self.failed) - 5} more)" if len(self.failed) > 5 else ""
            text += f"; failed {shown}{more}"
        if self.stale:
            text += f"; stale {', '.join(sorted(self.stale))}"
        return text


class LoadResult(NamedTuple):
    """``(prices, report)``: a price frame and the per-ticker report behind it."""

    prices: pd.DataFrame
    report: SourceReport


def empty_prices() -> pd.DataFrame:
    """A zero-row price frame with the contract's dtypes (for 'nothing found' paths)."""
    return pd.DataFrame(
        {
            "date": pd.Series([], dtype="datetime64[ns]"),
            "ticker": pd.Series([], dtype="str"),
            **{name: pd.Series([], dtype="float64") for name in (*PRICE_FIELDS, "volume")},
        }
    )


def to_day(value: DateLike) -> pd.Timestamp:
    """A naive midnight timestamp for ``value``; tz-aware values are read in New York time."""
    ts = pd.Timestamp(value)
    if ts.tzinfo is not None:
        ts = ts.tz_convert("America/New_York").tz_localize(None)
    return ts.normalize().as_unit("ns")


def normalize_prices(
    df: pd.DataFrame, *, dedupe: bool = False, drop_empty: bool = False
) -> pd.DataFrame:
    """Coerce ``df`` to the price-frame contract.

    Keeps only :data:`PRICE_COLUMNS`; converts dates to naive session dates,
    tickers to upper-case ``str`` and numbers to float64; drops rows without a
    date; sorts and resets the index. Raises :class:`PriceValidationError` when
    a column is missing or not numeric.

    ``drop_empty`` drops rows without any price (yfinance pads every ticker to
    the union of dates with all-NaN rows); ``dedupe`` keeps the newest of a
    duplicated (ticker, date) (merging a cache with fresh rows). Both are off
    for user files, so that validation sees and reports such rows instead of
    them vanishing here.
    """
    missing = [c for c in PRICE_COLUMNS if c not in df.columns]
    if missing:
        raise PriceValidationError(
            f"price frame is missing columns: {', '.join(missing)}",
            hint=f"expected columns {', '.join(PRICE_COLUMNS)}",
        )
    out = pd.DataFrame(
        {
            "date": _coerce_dates(df["date"]),
            "ticker": df["ticker"].astype("str").str.strip().str.upper(),
            **{name: _coerce_float(df[name], name) for name in (*PRICE_FIELDS, "volume")},
        }
    )
    keep = out["date"].notna()
    if drop_empty:
        keep &= out[list(PRICE_FIELDS)].notna().any(axis=1)
    out = out[keep]
    duplicated = out.duplicated(["ticker", "date"], keep="last")
    if dedupe and duplicated.any():
        logger.warning("dropping %d duplicated (ticker, date) rows", int(duplicated.sum()))
        out = out[~duplicated]
    out = out.sort_values(["ticker", "date"], kind="stable")
    return out.reset_index(drop=True)


def _coerce_dates(values: pd.Series) -> pd.Series:
    """Session dates from datetimes or strings, including yfinance's ``-05:00``/``-04:00`` text."""
    try:
        dates = pd.to_datetime(values, errors="coerce")
    except ValueError:  # mixed UTC offsets across DST: parse as instants, then read in New York
        dates = pd.to_datetime(values, errors="coerce", utc=True)
    bad = values.notna() & dates.isna()
    if bad.any():
        example = values[bad].iloc[0]
        raise PriceValidationError(
            f"{int(bad.sum())} date values cannot be parsed, e.g. {example!r}",
            hint="use ISO dates such as 2024-01-31",
        )
    if isinstance(dates.dtype, pd.DatetimeTZDtype):
        dates = dates.dt.tz_convert("America/New_York").dt.tz_localize(None)
    return dates.dt.normalize().astype("datetime64[ns]")


def _coerce_float(values: pd.Series, name: str) -> pd.Series:
    try:
        return pd.to_numeric(values, errors="raise").astype("float64")
    except (TypeError, ValueError) as exc:
        raise PriceValidationError(
            f"column {name!r} is not numeric ({exc})",
            hint="prices and volume must be numbers; blanks and 'null' are read as missing",
        ) from exc


def apply_adj_close(frame: pd.DataFrame, adj_column: str = "adj close") -> pd.DataFrame:
    """Adjust open/high/low/close by ``adj/close`` and volume by its inverse.

    This is the usual back-adjustment for splits and dividends: the ratio is
    the cumulative adjustment factor of that day, and dividing volume by it
    keeps dollar volume unchanged. Rows whose ``adj`` is missing keep their
    raw values (a partial Adj Close column should not erase real prices).
    """
    out = frame.copy()
    adj = pd.to_numeric(out[adj_column], errors="coerce").astype("float64")
    close = pd.to_numeric(out["close"], errors="coerce").astype("float64")
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = adj / close
    factor = factor.where(np.isfinite(factor) & (factor > 0), 1.0)
    for name in ("open", "high", "low"):
        out[name] = pd.to_numeric(out[name], errors="coerce").astype("float64") * factor
    out["close"] = close * factor
    out["volume"] = pd.to_numeric(out["volume"], errors="coerce").astype("float64") / factor
    return out.drop(columns=[adj_column])


def unique_tickers(tickers: Iterable[str]) -> list[str]:
    """Strip, upper-case and de-duplicate tickers, keeping first-seen order."""
    seen: dict[str, None] = {}
    for raw in tickers:
        name = str(raw).strip().upper()
        if name:
            seen.setdefault(name, None)
    return list(seen)


def select_tickers(
    prices: pd.DataFrame, tickers: Sequence[str] | None, where: str
) -> tuple[pd.DataFrame, dict[str, str]]:
    """Rows for ``tickers`` (None: all) and ``{ticker: reason}`` for those ``where`` lacks."""
    if tickers is None:
        return prices, {}
    have = sorted(prices["ticker"].unique().tolist())
    failed = {
        t: f"unknown ticker: not in {where} (has {preview(have)})" for t in tickers if t not in have
    }
    return prices[prices["ticker"].isin(list(tickers))].reset_index(drop=True), failed


def preview(items: Sequence[str], limit: int = 8) -> str:
    """``A, B, C, ... (+N more)``: enough of a list for an error message."""
    shown = ", ".join(items[:limit])
    if len(items) > limit:
        shown += f", ... (+{len(items) - limit} more)"
    return shown or "nothing"


def check_range(start: DateLike | None, end: DateLike | None) -> None:
    """Refuse ``start > end`` early, with the dates in the message."""
    if start is not None and end is not None and to_day(start) > to_day(end):
        raise ConfigError(
            f"start {to_day(start).date()} is after end {to_day(end).date()}",
            hint="pass an inclusive range with start <= end",
        )


def filter_prices(
    prices: pd.DataFrame,
    tickers: Sequence[str] | None = None,
    start: DateLike | None = None,
    end: DateLike | None = None,
) -> pd.DataFrame:
    """Rows of ``prices`` for ``tickers`` (None: all) within inclusive ``[start, end]``."""
    mask = pd.Series(True, index=prices.index)
    if tickers is not None:
        mask &= prices["ticker"].isin(list(tickers))
    if start is not None:
        mask &= prices["date"] >= to_day(start)
    if end is not None:
        mask &= prices["date"] <= to_day(end)
    return prices[mask].reset_index(drop=True)


def build_report(
    source: str,
    requested: Sequence[str],
    prices: pd.DataFrame,
    failed: dict[str, str] | None = None,
    stale: dict[str, str] | None = None,
) -> SourceReport:
    """A report whose ``loaded`` is read off the frame, so it cannot disagree with it."""
    present = set(prices["ticker"].unique().tolist())
    loaded = [t for t in requested if t in present]
    failures = {t: r for t, r in (failed or {}).items() if t not in present}
    for ticker in requested:
        if ticker not in present and ticker not in failures:
            failures[ticker] = "no rows returned"
    return SourceReport(
        source=source,
        requested=list(requested),
        loaded=loaded,
        failed=failures,
        stale={t: r for t, r in (stale or {}).items() if t in present},
    )
