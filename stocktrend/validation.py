"""Validate a long price frame before anything is computed from it.

Every price frame that enters stocktrend (downloaded, read from a file, bundled)
goes through :func:`validate_prices` first, because a model trained or scored on
a silently broken series gives plausible-looking but wrong predictions, and the
cause is then very hard to trace back. The validator never invents or changes a
value: it either repairs the *shape* of the frame (sorting, dtype coercion that
keeps every value), keeps a suspicious but possible row with a warning, or drops
the whole ticker with an error, so that one bad symbol does not stop a batch of
hundreds.

The contract it enforces: a long frame ``[date, ticker, open, high, low, close,
volume]``; ``date`` is a naive datetime64 session date, ``ticker`` a string,
prices float64, volume float64 (int64 accepted and kept); sorted by ticker then
date with a RangeIndex. A naive date column keeps its unit (Parquet gives ``[us]``);
tz-aware dates are read as New York wall time. Extra columns are carried through
untouched.

Frame-level failures raise :class:`~stocktrend.errors.PriceValidationError`
because no ticker can be checked at all: not a DataFrame, a missing column, a
date that cannot be parsed, a price or volume that is not a number.

Per-ticker rules (``error`` drops the ticker, ``fixed`` repaired the frame
without changing a value, ``warning`` keeps the rows and flags them):

=====================  ========  ===========================================================
rule                   severity  why
=====================  ========  ===========================================================
coerced_dtype          fixed     numbers or dates given as text/other dtypes; values kept.
unsorted               fixed     order carries no information, so sorting loses nothing.
bad_ticker             error     a symbol outside ``^\\^?[A-Z0-9.=-]{1,15}$`` is a parsing
                                 slip (lower case, spaces, empty) and would not round-trip.
missing_date           error     a row without a date cannot be placed in the series.
duplicate_date         error     two rows for one (ticker, date): which one is right is
                                 unknowable, and keeping either would be a guess.
missing_price          error     NaN/inf in open, high, low or close; forward-filling would
                                 invent a price, so the ticker goes instead.
non_positive_price     error     a price <= 0 is impossible for a stock or index and breaks
                                 log returns.
ohlc_inconsistent      error     high < low, or open/close outside [low, high] beyond a
                                 relative tolerance of 1e-6 (rounding in adjusted data):
                                 the bar is corrupt.
bad_volume             error     NaN, infinite or negative volume is corrupt data.
zero_volume            warning   real data has such days (halts, thin names, some indexes).
not_a_session          error     a date that is not an NYSE session (weekend, holiday, or a
                                 time of day other than midnight) means misaligned data.
session_gap            error     an NYSE session missing between the ticker's first and last
                                 date ("gap in prices"): windows would silently span it.
outside_calendar       warning   dates beyond the bundled NYSE calendar (1990..2035) cannot
                                 be checked; they are kept.
split_like             warning   the close jumped by a common split ratio (3:2, 2, 3, 4, 5, 10
                                 or the reverse) within 3 % and the open gapped the same way
                                 (within 10 %): looks like an unadjusted split. Kept, since a
                                 real crash can look exactly the same (AAPL, 2000-09-29).
large_move             warning   any other one-day |log return| above ``max_abs_log_return``
                                 (default log 2: the close halved or doubled). Kept: real.
=====================  ========  ===========================================================

``calendar_check=False`` skips ``not_a_session``, ``session_gap`` and
``outside_calendar`` (for frames that are not NYSE daily bars). Checks are vectorised
over the whole frame (numpy over tickers sorted contiguously); Python loops only run
over the tickers that have an issue, to build messages.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from stocktrend.calendar import TIMEZONE, nyse, sessions
from stocktrend.errors import PriceValidationError

Severity = Literal["error", "fixed", "warning"]
ERROR: Severity = "error"
FIXED: Severity = "fixed"
WARNING: Severity = "warning"

PRICE_COLUMNS = ("open", "high", "low", "close")
REQUIRED_COLUMNS = ("date", "ticker", *PRICE_COLUMNS, "volume")
TICKER_PATTERN = re.compile(r"^\^?[A-Z0-9.=-]{1,15}$")

OHLC_REL_TOL = 1e-6
"""Relative slack for high/low/open/close ordering: adjusted prices are rounded products."""

DEFAULT_MAX_ABS_LOG_RETURN = math.log(2.0)
"""A one-day close that halves or doubles is rare enough in daily bars to be worth a look."""

SPLIT_FACTORS = (1.5, 2.0, 3.0, 4.0, 5.0, 10.0)
"""The split ratios seen in practice (3:2, 2:1, ...); their inverses are reverse splits."""

SPLIT_CLOSE_TOL = 0.03
"""How near (relative) close/prev_close must be to 1/factor to look like a split."""

SPLIT_OPEN_TOL = 0.10
"""Looser for the open: it carries the overnight move on top of the split."""

MAX_DATES_SHOWN = 5
"""Messages list this many dates, then a count: reports stay readable for long gaps."""

RULES: dict[str, Severity] = {
    "coerced_dtype": FIXED,
    "unsorted": FIXED,
    "bad_ticker": ERROR,
    "missing_date": ERROR,
    "duplicate_date": ERROR,
    "missing_price": ERROR,
    "non_positive_price": ERROR,
    "ohlc_inconsistent": ERROR,
    "bad_volume": ERROR,
    "zero_volume": WARNING,
    "not_a_session": ERROR,
    "session_gap": ERROR,
    "outside_calendar": WARNING,
    "split_like": WARNING,
    "large_move": WARNING,
}
"""Every rule and its severity, in the order issues are reported."""


@dataclass(frozen=True)
class Issue:
    """One finding: a rule broken by one ticker (``ticker=None``: the frame as a whole).

    ``dates`` holds every date concerned, sorted (the message shows only the first
    few); it is empty for issues about a whole ticker or the whole frame.
    """

    rule: str
    severity: Severity
    ticker: str | None
    dates: tuple[pd.Timestamp, ...]
    message: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form: dates as ISO strings."""
        return {
            "rule": self.rule,
            "severity": self.severity,
            "ticker": self.ticker,
            "dates": [_fmt_day(d) for d in self.dates],
            "message": self.message,
        }


@dataclass
class ValidationReport:
    """What :func:`validate_prices` found and did; ``ok`` means no ticker was dropped."""

    issues: list[Issue] = field(default_factory=list)
    dropped_tickers: dict[str, str] = field(default_factory=dict)
    kept_tickers: list[str] = field(default_factory=list)
    n_rows_in: int = 0
    n_rows_out: int = 0

    @property
    def ok(self) -> bool:
        """True when there is no error (fixes and warnings are fine)."""
        return not self.errors

    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == ERROR]

    @property
    def warnings(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == WARNING]

    @property
    def fixes(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == FIXED]

    def to_frame(self) -> pd.DataFrame:
        """One row per issue (dates summarised as count, first, last) for display or storage."""
        rows = [
            {
                "rule": i.rule,
                "severity": i.severity,
                "ticker": i.ticker,
                "n_dates": len(i.dates),
                "first_date": i.dates[0] if i.dates else pd.NaT,
                "last_date": i.dates[-1] if i.dates else pd.NaT,
                "message": i.message,
            }
            for i in self.issues
        ]
        columns = ["rule", "severity", "ticker", "n_dates", "first_date", "last_date", "message"]
        out = pd.DataFrame(rows, columns=columns)
        out["n_dates"] = out["n_dates"].astype("int64")
        for col in ("first_date", "last_date"):
            out[col] = pd.to_datetime(out[col])
        return out

    def summary(self, max_per_section: int = 20) -> str:
        """Multi-line text for logs and the CLI: counts, then errors, warnings and fixes."""
        lines = [
            f"Price validation: {len(self.kept_tickers) + len(self.dropped_tickers)} tickers in, "
            f"{len(self.kept_tickers)} kept, {len(self.dropped_tickers)} dropped; "
            f"{self.n_rows_in} rows in, {self.n_rows_out} rows out."
        ]
        if self.dropped_tickers:
            names = [_show_ticker(t) for t in self.dropped_tickers]
            more = len(names) - max_per_section
            lines.append(
                "Dropped: " + ", ".join(names[:max_per_section]) + (f", ... (+{more})" * (more > 0))
            )
        for title, issues in (
            ("Errors", self.errors),
            ("Warnings", self.warnings),
            ("Fixed", self.fixes),
        ):
            if not issues:
                continue
            lines.append(f"{title} ({len(issues)}):")
            lines.extend(f"  - [{i.rule}] {i.message}" for i in issues[:max_per_section])
            if len(issues) > max_per_section:
                lines.append(f"  ... and {len(issues) - max_per_section} more (see to_frame())")
        if not self.issues:
            lines.append("No issues.")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (plain str, int, bool, list, dict) for run records."""
        return {
            "ok": self.ok,
            "n_rows_in": int(self.n_rows_in),
            "n_rows_out": int(self.n_rows_out),
            "kept_tickers": list(self.kept_tickers),
            "dropped_tickers": dict(self.dropped_tickers),
            "issues": [i.to_dict() for i in self.issues],
        }


def validate_prices(
    df: pd.DataFrame,
    *,
    calendar_check: bool = True,
    max_abs_log_return: float | None = DEFAULT_MAX_ABS_LOG_RETURN,
) -> tuple[pd.DataFrame, ValidationReport]:
    """Check a long price frame; return the clean frame and a report.

    The clean frame has the input's columns, the contract's dtypes, rows sorted by
    ticker then date, a RangeIndex, and no row of a ticker that broke an ``error``
    rule. The input is never modified. ``max_abs_log_return=None`` turns the
    ``large_move`` warning off. Raises :class:`PriceValidationError` when the
    frame as a whole is unusable (see the module docstring).
    """
    if max_abs_log_return is not None and not (
        math.isfinite(max_abs_log_return) and max_abs_log_return > 0
    ):
        raise ValueError(f"max_abs_log_return must be a positive number, got {max_abs_log_return}")
    frame, issues = _coerce(df)
    frame, sort_issues = _sort(frame)
    prices = _Prices.of(frame)
    found = [
        *issues,
        *sort_issues,
        *_check_tickers(prices),
        *_check_missing_dates(prices),
        *_check_duplicates(prices),
        *_check_prices(prices),
        *_check_ohlc(prices),
        *_check_volume(prices),
    ]
    if calendar_check:
        found += _check_calendar(prices)
    found += _check_moves(prices, max_abs_log_return)
    order = {rule: n for n, rule in enumerate(RULES)}
    found.sort(key=lambda i: (order[i.rule], i.ticker or ""))
    return _finish(frame, prices, found, n_rows_in=len(df))


def _finish(
    frame: pd.DataFrame, prices: _Prices, issues: list[Issue], *, n_rows_in: int
) -> tuple[pd.DataFrame, ValidationReport]:
    """Drop the tickers with errors and assemble the report."""
    reasons: dict[str, list[str]] = {}
    for issue in issues:
        if issue.severity == ERROR and issue.ticker is not None:
            reasons.setdefault(issue.ticker, []).append(issue.message)
    dropped = {t: "; ".join(reasons[t]) for t in sorted(reasons)}
    keep_codes = np.array([t not in dropped for t in prices.names], dtype=bool)
    keep_rows = keep_codes[prices.codes] if len(prices.codes) else np.zeros(0, dtype=bool)
    clean = frame.loc[keep_rows].reset_index(drop=True)
    report = ValidationReport(
        issues=issues,
        dropped_tickers=dropped,
        kept_tickers=[str(t) for t in prices.names if t not in dropped],
        n_rows_in=int(n_rows_in),
        n_rows_out=len(clean),
    )
    return clean, report


# --- frame level: columns and dtypes -------------------------------------------------------


def _coerce(df: object) -> tuple[pd.DataFrame, list[Issue]]:
    """A shallow copy with contract dtypes and a RangeIndex, or PriceValidationError."""
    if not isinstance(df, pd.DataFrame):
        raise PriceValidationError(
            f"prices must be a pandas DataFrame, got {type(df).__name__}",
            hint="build a long frame with columns " + ", ".join(REQUIRED_COLUMNS),
        )
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise PriceValidationError(
            f"price frame is missing column(s): {', '.join(missing)}",
            hint="expected columns " + ", ".join(REQUIRED_COLUMNS),
        )
    doubled = sorted({str(c) for c in df.columns[df.columns.duplicated()]} & set(REQUIRED_COLUMNS))
    if doubled:
        raise PriceValidationError(f"price frame has duplicate column(s): {', '.join(doubled)}")
    frame = df.reset_index(drop=True)
    notes: list[str] = []
    coercers: list[tuple[str, Callable[[pd.Series, str], pd.Series]]] = [
        ("date", _coerce_dates),
        ("ticker", _coerce_tickers),
        *((c, _coerce_prices) for c in PRICE_COLUMNS),
        ("volume", _coerce_volume),
    ]
    for column, coerce in coercers:
        before = frame[column]
        after = coerce(before, column)
        if after is not before:
            notes.append(f"{column}: {before.dtype} -> {after.dtype}")
            frame[column] = after
    if frame["ticker"].isna().any():  # '' is reported by bad_ticker, then dropped
        frame["ticker"] = frame["ticker"].fillna("")
    if not notes:
        return frame, []
    message = "coerced column dtypes without changing values: " + "; ".join(notes)
    return frame, [Issue("coerced_dtype", FIXED, None, (), message)]


def _coerce_dates(s: pd.Series, column: str) -> pd.Series:
    """Naive datetime64 as is; tz-aware to New York wall time; text parsed; else fail."""
    if isinstance(s.dtype, pd.DatetimeTZDtype):
        return s.dt.tz_convert(TIMEZONE).dt.tz_localize(None)
    if pd.api.types.is_datetime64_dtype(s.dtype):
        return s
    if not (s.dtype == object or isinstance(s.dtype, pd.StringDtype)):
        raise PriceValidationError(
            f"column {column!r} has dtype {s.dtype}; expected datetime64 session dates",
            hint="convert with pd.to_datetime",
        )
    try:
        parsed = pd.to_datetime(s, errors="coerce")
    except (ValueError, TypeError) as exc:
        raise PriceValidationError(f"column {column!r} cannot be parsed as dates: {exc}") from exc
    if not pd.api.types.is_datetime64_any_dtype(parsed.dtype):
        raise PriceValidationError(f"column {column!r} cannot be parsed as dates (mixed values)")
    _fail_on_unparsed(s, parsed, column, "dates")
    if isinstance(parsed.dtype, pd.DatetimeTZDtype):
        parsed = parsed.dt.tz_convert(TIMEZONE).dt.tz_localize(None)
    return parsed


def _coerce_tickers(s: pd.Series, column: str) -> pd.Series:
    """String dtype (symbols given as numbers or categories become text)."""
    return s if isinstance(s.dtype, pd.StringDtype) else s.astype("str")


def _coerce_prices(s: pd.Series, column: str) -> pd.Series:
    """float64; integers, float32, nullable and numeric text are converted; else fail."""
    if s.dtype == np.float64:
        return s
    return _to_float(s, column)


def _coerce_volume(s: pd.Series, column: str) -> pd.Series:
    """float64 or int64 kept (volume counts are integers); other numbers become float64."""
    if s.dtype in (np.float64, np.int64):
        return s
    return _to_float(s, column)


def _to_float(s: pd.Series, column: str) -> pd.Series:
    if pd.api.types.is_bool_dtype(s.dtype):
        raise PriceValidationError(f"column {column!r} is boolean; expected numbers")
    if pd.api.types.is_numeric_dtype(s.dtype):
        return pd.Series(s.to_numpy(dtype="float64", na_value=np.nan), index=s.index, name=s.name)
    if s.dtype == object or isinstance(s.dtype, pd.StringDtype):
        parsed = pd.to_numeric(s, errors="coerce")
        _fail_on_unparsed(s, parsed, column, "numbers")
        return pd.Series(
            parsed.to_numpy(dtype="float64", na_value=np.nan), index=s.index, name=s.name
        )
    raise PriceValidationError(f"column {column!r} has dtype {s.dtype}; expected numbers")


def _fail_on_unparsed(raw: pd.Series, parsed: pd.Series, column: str, what: str) -> None:
    """Raise naming a few values that were present but could not be read."""
    bad = raw.notna().to_numpy() & parsed.isna().to_numpy()
    if bad.any():
        values = raw[bad]
        shown = ", ".join(repr(v) for v in values.iloc[:MAX_DATES_SHOWN])
        raise PriceValidationError(
            f"column {column!r} has {int(bad.sum())} value(s) that are not {what}: {shown}",
            hint="fix the source; the validator does not guess values",
        )


def _sort(frame: pd.DataFrame) -> tuple[pd.DataFrame, list[Issue]]:
    """Stable sort by (ticker, date); a fix reported only when some row actually moved."""
    codes, names = pd.factorize(frame["ticker"], sort=True)
    days = frame["date"].to_numpy(dtype="datetime64[ns]").view("int64").copy()
    days[frame["date"].isna().to_numpy()] = np.iinfo(np.int64).max  # NaT last, as pandas does
    order = np.lexsort((days, codes))
    moved = order != np.arange(len(order))
    if not moved.any():
        return frame, []
    tickers = [str(names[c]) for c in np.unique(codes[order[moved]])]
    message = (
        f"rows were not sorted by ticker then date; sorted ({int(moved.sum())} rows of "
        f"{len(tickers)} ticker(s) moved: {_list(tickers)})"
    )
    return frame.take(order).reset_index(drop=True), [Issue("unsorted", FIXED, None, (), message)]


# --- per-ticker rules ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Prices:
    """The sorted frame as numpy arrays, with tickers as contiguous integer codes."""

    codes: np.ndarray
    names: np.ndarray
    dates: np.ndarray  # datetime64[ns], NaT allowed
    same_prev: np.ndarray  # row i belongs to the same ticker as row i - 1
    columns: dict[str, np.ndarray]

    @classmethod
    def of(cls, frame: pd.DataFrame) -> _Prices:
        codes, names = pd.factorize(frame["ticker"], sort=True)
        same_prev = np.zeros(len(codes), dtype=bool)
        same_prev[1:] = codes[1:] == codes[:-1]
        columns = {
            c: frame[c].to_numpy(dtype="float64", na_value=np.nan)
            for c in (*PRICE_COLUMNS, "volume")
        }
        dates = frame["date"].to_numpy(dtype="datetime64[ns]")
        return cls(codes, np.asarray(names, dtype=object), dates, same_prev, columns)

    def prev(self, values: np.ndarray) -> np.ndarray:
        """values of the previous row of the same ticker (NaN / NaT at a ticker's start)."""
        out = np.empty_like(values)
        out[1:] = values[:-1]
        out[~self.same_prev] = np.nan if values.dtype.kind == "f" else np.datetime64("NaT")
        return out


Describe = Callable[[str, np.ndarray, np.ndarray], str]
"""``describe(ticker, rows, days)``: the message for one ticker's flagged ``rows``
(positions in the sorted frame) whose distinct dates are ``days`` (sorted datetime64)."""


def _row_issues(
    p: _Prices, mask: np.ndarray, rule: str, describe: Describe, *, with_dates: bool = True
) -> list[Issue]:
    """One issue per ticker having flagged rows (rows are contiguous per ticker)."""
    rows = np.flatnonzero(mask)
    if not len(rows):
        return []
    out: list[Issue] = []
    codes, starts = np.unique(p.codes[rows], return_index=True)
    for code, group in zip(codes, np.split(rows, starts[1:]), strict=True):
        ticker = str(p.names[code])
        days = np.unique(p.dates[group])
        dates = _timestamps(days) if with_dates else ()
        out.append(Issue(rule, RULES[rule], ticker, dates, describe(ticker, group, days)))
    return out


def _check_tickers(p: _Prices) -> list[Issue]:
    counts = np.bincount(p.codes, minlength=len(p.names))
    out = []
    for code, name in enumerate(p.names):
        if TICKER_PATTERN.fullmatch(name):
            continue
        if name == "":
            message = f"{counts[code]} row(s) have no ticker symbol"
        else:
            message = (
                f"{name!r}: ticker symbol does not match {TICKER_PATTERN.pattern} "
                "(upper-case letters, digits, '.', '=', '-', optional leading '^', 1-15 chars)"
            )
        out.append(Issue("bad_ticker", ERROR, str(name), (), message))
    return out


def _check_missing_dates(p: _Prices) -> list[Issue]:
    def describe(ticker: str, rows: np.ndarray, days: np.ndarray) -> str:
        return f"{_show_ticker(ticker)}: {len(rows)} row(s) with no date (NaT)"

    return _row_issues(p, np.isnat(p.dates), "missing_date", describe, with_dates=False)


def _check_duplicates(p: _Prices) -> list[Issue]:
    mask = p.same_prev & (p.dates == p.prev(p.dates))  # the 2nd, 3rd.. row; NaT != NaT

    def describe(ticker: str, rows: np.ndarray, days: np.ndarray) -> str:
        return (
            f"{_show_ticker(ticker)}: more than one row {_on_dates(days)} "
            "(which row is right cannot be known)"
        )

    return _row_issues(p, mask, "duplicate_date", describe)


def _check_prices(p: _Prices) -> list[Issue]:
    values = {c: p.columns[c] for c in PRICE_COLUMNS}
    not_finite = {c: ~np.isfinite(v) for c, v in values.items()}
    with np.errstate(invalid="ignore"):
        non_positive = {c: np.isfinite(v) & (v <= 0) for c, v in values.items()}
    missing = "NaN or infinite {what} {on} (nothing is forward-filled)"
    return [
        *_kind_issues(p, not_finite, "missing_price", missing),
        *_kind_issues(p, non_positive, "non_positive_price", "non-positive {what} {on}"),
    ]


def _check_ohlc(p: _Prices) -> list[Issue]:
    o, h, lo, c = (p.columns[k] for k in PRICE_COLUMNS)
    slack = OHLC_REL_TOL * np.fmax(np.abs(h), np.abs(lo))
    with np.errstate(invalid="ignore"):
        kinds = {
            "high < low": h < lo - slack,
            "open outside [low, high]": (o > h + slack) | (o < lo - slack),
            "close outside [low, high]": (c > h + slack) | (c < lo - slack),
        }
    return _kind_issues(p, kinds, "ohlc_inconsistent", "{what} {on}")


def _kind_issues(p: _Prices, kinds: dict[str, np.ndarray], rule: str, template: str) -> list[Issue]:
    """Row issues for several flags at once; the message names the flags a ticker broke."""
    mask = np.logical_or.reduce(list(kinds.values()))

    def describe(ticker: str, rows: np.ndarray, days: np.ndarray) -> str:
        what = ", ".join(k for k, flag in kinds.items() if flag[rows].any())
        return f"{_show_ticker(ticker)}: " + template.format(what=what, on=_on_dates(days))

    return _row_issues(p, mask, rule, describe)


def _check_volume(p: _Prices) -> list[Issue]:
    v = p.columns["volume"]
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(v) | (v < 0)
        zero = v == 0

    def describe_bad(ticker: str, rows: np.ndarray, days: np.ndarray) -> str:
        return f"{_show_ticker(ticker)}: NaN, infinite or negative volume {_on_dates(days)}"

    def describe_zero(ticker: str, rows: np.ndarray, days: np.ndarray) -> str:
        return (
            f"{_show_ticker(ticker)}: zero volume {_on_dates(days)} (kept: real data has such days)"
        )

    return [
        *_row_issues(p, bad, "bad_volume", describe_bad),
        *_row_issues(p, zero, "zero_volume", describe_zero),
    ]


def _check_calendar(p: _Prices) -> list[Issue]:
    """Non-session dates, sessions missing inside each ticker's span, unchecked dates."""
    cal = nyse()
    first = np.datetime64(pd.Timestamp(cal.first_session).tz_localize(None), "ns")
    last = np.datetime64(pd.Timestamp(cal.last_session).tz_localize(None), "ns")
    known = ~np.isnat(p.dates)
    with np.errstate(invalid="ignore"):
        inside = known & (p.dates >= first) & (p.dates <= last)

    def describe_outside(ticker: str, rows: np.ndarray, days: np.ndarray) -> str:
        return (
            f"{_show_ticker(ticker)}: NYSE calendar not checked {_on_dates(days)} "
            f"(outside {_fmt_day(first)}..{_fmt_day(last)})"
        )

    issues = _row_issues(p, known & ~inside, "outside_calendar", describe_outside)
    if not inside.any():
        return issues
    lo, hi = p.dates[inside].min(), p.dates[inside].max()
    grid = sessions(pd.Timestamp(lo).normalize(), pd.Timestamp(hi)).to_numpy(dtype="datetime64[ns]")
    pos = np.searchsorted(grid, p.dates)
    hit = np.zeros(len(pos), dtype=bool)
    found = inside & (pos < len(grid))
    hit[found] = grid[pos[found]] == p.dates[found]

    def describe_not_session(ticker: str, rows: np.ndarray, days: np.ndarray) -> str:
        notes = [_session_note(pd.Timestamp(d)) for d in days[:MAX_DATES_SHOWN]]
        return f"{_show_ticker(ticker)}: not an NYSE session {_on_dates(days, notes)}"

    issues += _row_issues(p, inside & ~hit, "not_a_session", describe_not_session)
    return issues + _gap_issues(p, grid, hit, pos)


def _session_note(day: pd.Timestamp) -> str:
    """Why a date is not a session, as far as is cheap to tell: weekday or time of day."""
    if day != day.normalize():
        return "has a time of day"
    return day.day_name()[:3] if day.dayofweek >= 5 else f"{day.day_name()[:3]}, holiday"


def _gap_issues(p: _Prices, grid: np.ndarray, hit: np.ndarray, pos: np.ndarray) -> list[Issue]:
    """Sessions of ``grid`` missing between consecutive session rows of each ticker."""
    rows = np.flatnonzero(hit)  # session rows, still sorted by ticker then date
    codes, at = p.codes[rows], pos[rows]
    prev_at = np.zeros_like(at)
    prev_at[1:] = at[:-1]
    same = np.zeros(len(rows), dtype=bool)
    same[1:] = codes[1:] == codes[:-1]
    width = np.where(same, at - prev_at - 1, 0)  # duplicates give -1: not a gap
    gaps = np.flatnonzero(width > 0)
    if not len(gaps):
        return []
    counts = width[gaps]
    # grid positions prev+1 .. at-1 of every gap, flattened without a Python loop
    offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    missing_at = np.repeat(prev_at[gaps] + 1, counts) + offsets
    missing_codes = np.repeat(codes[gaps], counts)  # sorted, like codes
    spans = _ticker_spans(p, rows)
    out = []
    uniq, starts = np.unique(missing_codes, return_index=True)
    for code, where in zip(uniq, np.split(missing_at, starts[1:]), strict=True):
        ticker = str(p.names[code])
        start, end = spans[code]
        message = (
            f"{_show_ticker(ticker)}: gap in prices: {len(where)} NYSE session(s) missing "
            f"between {_fmt_day(start)} and {_fmt_day(end)}: {_list(grid[where], fmt=_fmt_day)}"
        )
        out.append(Issue("session_gap", ERROR, ticker, _timestamps(grid[where]), message))
    return out


def _ticker_spans(p: _Prices, rows: np.ndarray) -> dict[int, tuple[np.datetime64, np.datetime64]]:
    """First and last date of each ticker among ``rows`` (sorted by ticker, date)."""
    uniq, first = np.unique(p.codes[rows], return_index=True)
    last = np.r_[first[1:], len(rows)] - 1
    return {
        int(c): (p.dates[rows[a]], p.dates[rows[b]])
        for c, a, b in zip(uniq, first, last, strict=True)
    }


def _check_moves(p: _Prices, max_abs_log_return: float | None) -> list[Issue]:
    """Split-like jumps first; other one-day moves beyond the threshold after."""
    close, open_ = p.columns["close"], p.columns["open"]
    prev_close = p.prev(close)
    with np.errstate(invalid="ignore", divide="ignore"):
        usable = (prev_close > 0) & (close > 0) & np.isfinite(prev_close) & np.isfinite(close)
        log_close = np.where(usable, np.log(close / prev_close), np.nan)
        log_open = np.where(usable & (open_ > 0), np.log(open_ / prev_close), np.nan)
    candidates = _split_candidates()
    labels = np.full(len(close), -1)
    with np.errstate(invalid="ignore"):
        for n, (log_ratio, _) in enumerate(candidates):
            near_close = np.abs(log_close - log_ratio) <= math.log1p(SPLIT_CLOSE_TOL)
            near_open = np.abs(log_open - log_ratio) <= math.log1p(SPLIT_OPEN_TOL)
            labels[(labels < 0) & near_close & near_open] = n
    split = labels >= 0

    def describe_split(ticker: str, rows: np.ndarray, days: np.ndarray) -> str:
        events = [
            f"looks like an unadjusted {candidates[labels[r]][1]} on {_fmt_day(p.dates[r])} "
            f"(close {_pct(log_close[r])})"
            for r in rows[:MAX_DATES_SHOWN]
        ]
        more = f"; ... (+{len(rows) - len(events)} more)" if len(rows) > len(events) else ""
        return (
            f"{_show_ticker(ticker)}: {'; '.join(events)}{more}; kept (a real move can look "
            "the same): check the source's split adjustment"
        )

    issues = _row_issues(p, split, "split_like", describe_split)
    if max_abs_log_return is None:
        return issues
    with np.errstate(invalid="ignore"):
        large = ~split & (np.abs(log_close) > max_abs_log_return)

    def describe_large(ticker: str, rows: np.ndarray, days: np.ndarray) -> str:
        moves = [f"close {_pct(log_close[r])}" for r in rows[:MAX_DATES_SHOWN]]
        return (
            f"{_show_ticker(ticker)}: one-day move beyond |log return| {max_abs_log_return:.3g} "
            f"{_on_dates(p.dates[rows], moves)} (kept: crashes and jumps are real)"
        )

    return issues + _row_issues(p, large, "large_move", describe_large)


def _split_candidates() -> list[tuple[float, str]]:
    """(log close ratio, label) of every split and reverse split considered."""
    out = []
    for factor in SPLIT_FACTORS:
        ratio = f"{factor:g}:1" if factor != 1.5 else "3:2"
        reverse = f"1:{factor:g}" if factor != 1.5 else "2:3"
        out.append((-math.log(factor), f"{ratio} split"))
        out.append((math.log(factor), f"{reverse} reverse split"))
    return out


# --- formatting ------------------------------------------------------------------------------


def _timestamps(values: np.ndarray) -> tuple[pd.Timestamp, ...]:
    return tuple(pd.DatetimeIndex(values))


def _fmt_day(day: Any) -> str:
    ts = pd.Timestamp(day)
    if ts is pd.NaT:
        return "NaT"
    return ts.strftime("%Y-%m-%d") if ts == ts.normalize() else ts.isoformat(sep=" ")


def _pct(log_return: float) -> str:
    return f"{math.expm1(log_return) * 100:+.1f}%"


def _show_ticker(ticker: str) -> str:
    return ticker if ticker else "<no ticker>"


def _list(items: Sequence[Any], sep: str = ", ", fmt: Callable[[Any], str] = str) -> str:
    """The first few items, then how many more: long lists stay one readable line.

    Only the shown items are formatted, so a gap of thousands of sessions costs nothing.
    """
    shown = sep.join(fmt(item) for item in items[:MAX_DATES_SHOWN])
    if len(items) > MAX_DATES_SHOWN:
        shown += f"{sep}... (+{len(items) - MAX_DATES_SHOWN} more)"
    return shown


def _on_dates(dates: Sequence[Any], notes: Sequence[str] | None = None) -> str:
    """'on 2005-03-01' or 'on 12 dates: 2005-03-01, ..., ... (+7 more)'."""
    if notes is None:
        text = _list(dates, fmt=_fmt_day)
    else:
        labelled = [(d, n) for d, n in zip(dates[:MAX_DATES_SHOWN], notes, strict=False)]
        text = _list(labelled, fmt=lambda dn: f"{_fmt_day(dn[0])} ({dn[1]})")
        if len(dates) > MAX_DATES_SHOWN:
            text += f", ... (+{len(dates) - MAX_DATES_SHOWN} more)"
    if len(dates) == 1:
        return f"on {text}"
    return f"on {len(dates)} dates: {text}"
