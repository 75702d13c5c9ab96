"""NYSE trading sessions, from ``exchange_calendars``.

Sessions are naive midnight timestamps (the session date), which is how every
frame in stocktrend stores dates. "Completed" means the regular close has
passed in New York, so a daily run scheduled at 17:30 ET scores that day and a
run at 09:00 ET scores the previous session.
"""

from __future__ import annotations

from datetime import date, datetime
from functools import lru_cache

import exchange_calendars as xcals
import pandas as pd

EXCHANGE = "XNYS"
TIMEZONE = "America/New_York"
_FIRST, _LAST = "1990-01-01", "2035-12-31"

DateLike = str | date | datetime | pd.Timestamp


@lru_cache(maxsize=1)
def nyse() -> xcals.ExchangeCalendar:
    """The NYSE calendar over 1990..2035 (built once: it is immutable and takes ~0.1 s)."""
    return xcals.get_calendar(EXCHANGE, start=_FIRST, end=_LAST)


def _day(value: DateLike) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    if ts.tzinfo is not None:
        ts = ts.tz_convert(TIMEZONE).tz_localize(None)
    return ts.normalize()


def sessions(start: DateLike, end: DateLike) -> pd.DatetimeIndex:
    """NYSE sessions in ``[start, end]`` as naive dates; empty when start > end."""
    lo, hi = _day(start), _day(end)
    if lo > hi:
        return pd.DatetimeIndex([], name="date")
    out = nyse().sessions_in_range(lo, hi)
    return pd.DatetimeIndex(out.tz_localize(None) if out.tz else out, name="date").as_unit("ns")


def is_session(day: DateLike) -> bool:
    """True when ``day`` is a full or early-close NYSE session."""
    return bool(nyse().is_session(_day(day)))


def last_completed_session(now: DateLike | None = None) -> pd.Timestamp:
    """The latest session whose close is at or before ``now``.

    ``now`` may be tz-aware (any zone) or naive; naive values are read as New
    York wall-clock time, which is what a user typing a time expects. Early
    closes (e.g. 13:00 on the day after Thanksgiving) are honoured.
    """
    if now is None:
        stamp = pd.Timestamp.now(tz=TIMEZONE)
    else:
        stamp = pd.Timestamp(now)
        stamp = stamp.tz_localize(TIMEZONE) if stamp.tzinfo is None else stamp
    cal = nyse()
    today = stamp.tz_convert(TIMEZONE).tz_localize(None).normalize()
    if cal.is_session(today):
        if cal.session_close(today) <= stamp:
            return today
        return _naive(cal.previous_session(today))
    return _naive(cal.date_to_session(today, direction="previous"))


def _naive(ts: pd.Timestamp) -> pd.Timestamp:
    ts = pd.Timestamp(ts)
    return ts.tz_localize(None) if ts.tzinfo else ts


def previous_sessions(end: DateLike, count: int) -> pd.DatetimeIndex:
    """The ``count`` sessions ending at ``end`` (inclusive when ``end`` is a session)."""
    cal = nyse()
    last = cal.date_to_session(_day(end), direction="previous")
    pos = cal.sessions.get_loc(last)
    out = cal.sessions[max(0, pos - count + 1) : pos + 1]
    return pd.DatetimeIndex(out.tz_localize(None) if out.tz else out, name="date").as_unit("ns")


def session_offset(day: DateLike, n: int) -> pd.Timestamp:
    """The session ``n`` sessions after ``day`` (``day`` rolled back to a session first)."""
    cal = nyse()
    base = cal.date_to_session(_day(day), direction="previous")
    pos = cal.sessions.get_loc(base) + n
    if not 0 <= pos < len(cal.sessions):
        raise ValueError(f"{n} sessions from {_day(day).date()} is outside the calendar")
    return _naive(cal.sessions[pos])
