"""The prediction record: one row per scored window, the shape every store reads and writes.

=================  ======================  ==============================================
column             dtype                   meaning
=================  ======================  ==============================================
as_of_date         datetime64[ns], naive   session the window ends on (midnight)
ticker             str                     symbol, e.g. ``AAPL``
prob_up            float64                 P(bullish), in [0, 1]
predicted_class    int64                   0 = bearish, 1 = bullish
label              str                     ``bearish`` / ``bullish`` (agrees with the class)
horizon            int64                   label horizon in sessions (>= 1)
model_version      str                     e.g. ``v2.0``
model_sha256       str                     checksum of the checkpoint that scored the row
flow_run_id        str, may be missing     Prefect flow run; NaN for CLI-only runs
created_at         datetime64[us, UTC]     when the row was scored
=================  ======================  ==============================================

Unique on :data:`PREDICTION_KEY`. ``as_of_date`` uses the price frame's date
dtype so predictions join the prices they were scored from without a cast;
``created_at`` is kept to microseconds because that is what PostgreSQL and
Parquet (as written here) store, so a round trip through any store is exact.

Stores call :func:`validate_predictions` on the way in *and* on the way out,
so a frame that came back from a store is always in this contract.
"""

from __future__ import annotations

import pandas as pd

PREDICTION_COLUMNS: tuple[str, ...] = (
    "as_of_date",
    "ticker",
    "prob_up",
    "predicted_class",
    "label",
    "horizon",
    "model_version",
    "model_sha256",
    "flow_run_id",
    "created_at",
)
"""Columns of a prediction frame, in order."""

PREDICTION_KEY: tuple[str, ...] = ("as_of_date", "ticker", "model_version")
"""At most one row per key: re-scoring a window replaces its row."""

PREDICTION_DTYPES: dict[str, str] = {
    "as_of_date": "datetime64[ns]",
    "ticker": "str",
    "prob_up": "float64",
    "predicted_class": "int64",
    "label": "str",
    "horizon": "int64",
    "model_version": "str",
    "model_sha256": "str",
    "flow_run_id": "str",
    "created_at": "datetime64[us, UTC]",
}

LABELS: tuple[str, str] = ("bearish", "bullish")
"""``LABELS[predicted_class]`` is the row's label."""

MAX_LENGTHS: dict[str, int] = {
    "ticker": 32,
    "label": 16,
    "model_version": 128,
    "model_sha256": 64,
    "flow_run_id": 64,
}
"""Longest text the database columns hold; checked here so both stores refuse the same rows."""

_EXAMPLES = 3


def empty_predictions() -> pd.DataFrame:
    """A zero-row frame in the contract's dtypes, for 'nothing stored yet' paths."""
    columns = {name: pd.Series([], dtype=dtype) for name, dtype in PREDICTION_DTYPES.items()}
    return pd.DataFrame(columns)


def validate_predictions(df: pd.DataFrame) -> pd.DataFrame:
    """Return ``df`` coerced to the prediction contract, or raise ``ValueError`` saying why not.

    Extra columns are dropped and the index is reset; the input is not modified.
    Naive ``created_at`` values are taken to be UTC. Rejected: missing columns,
    missing values (except ``flow_run_id``), ``as_of_date`` with a time of day
    or a timezone, ``prob_up`` NaN or outside [0, 1], a class other than 0/1, a
    label that disagrees with the class, ``horizon`` < 1 and duplicated keys.
    Errors name the offending rows, because the caller is usually a batch
    over hundreds of tickers and "some value is bad" is not actionable.
    """
    missing = [name for name in PREDICTION_COLUMNS if name not in df.columns]
    if missing:
        raise ValueError(
            f"predictions are missing columns: {', '.join(missing)} "
            f"(expected {', '.join(PREDICTION_COLUMNS)})"
        )
    frame = df.loc[:, list(PREDICTION_COLUMNS)].reset_index(drop=True)
    out = pd.DataFrame(
        {
            "as_of_date": _dates(frame),
            "ticker": _text(frame, "ticker"),
            "prob_up": _probabilities(frame),
            "predicted_class": _classes(frame),
            "label": _text(frame, "label"),
            "horizon": _horizons(frame),
            "model_version": _text(frame, "model_version"),
            "model_sha256": _text(frame, "model_sha256"),
            "flow_run_id": _optional_text(frame, "flow_run_id"),
            "created_at": _timestamps(frame),
        }
    )
    _check_labels(out)
    _check_unique(out)
    return out


def _rows(frame: pd.DataFrame, bad: pd.Series) -> str:
    """A few offending rows as ``ticker@date`` so an error message points somewhere."""
    picked = frame.loc[bad, ["ticker", "as_of_date"]].head(_EXAMPLES)
    shown = ", ".join(f"{t}@{_day_text(d)}" for t, d in picked.itertuples(index=False))
    more = int(bad.sum()) - len(picked)
    return shown + (f" (+{more} more)" if more > 0 else "")


def _day_text(value: object) -> str:
    try:
        return pd.Timestamp(value).strftime("%Y-%m-%d")  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return str(value)


def _fail(frame: pd.DataFrame, bad: pd.Series, what: str) -> None:
    if bad.any():
        raise ValueError(f"{int(bad.sum())} predictions {what}: {_rows(frame, bad)}")


def _dates(frame: pd.DataFrame) -> pd.Series:
    values = frame["as_of_date"]
    _fail(frame, values.isna(), "have no as_of_date")
    try:
        dates = pd.to_datetime(values)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"as_of_date values cannot be parsed as dates: {exc}") from exc
    if isinstance(dates.dtype, pd.DatetimeTZDtype):
        raise ValueError("as_of_date must be a session date without a timezone")
    _fail(frame, dates != dates.dt.normalize(), "have an as_of_date with a time of day")
    return dates.astype("datetime64[ns]")


def _text(frame: pd.DataFrame, name: str) -> pd.Series:
    values = frame[name]
    _fail(frame, values.isna() | (values.astype("str").str.strip() == ""), f"have no {name}")
    return _optional_text(frame, name)


def _optional_text(frame: pd.DataFrame, name: str) -> pd.Series:
    text = frame[name].astype("str")
    limit = MAX_LENGTHS[name]
    _fail(frame, text.str.len() > limit, f"have a {name} longer than {limit} characters")
    return text


def _numbers(frame: pd.DataFrame, name: str) -> pd.Series:
    try:
        numbers = pd.to_numeric(frame[name], errors="raise")
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} is not numeric: {exc}") from exc
    _fail(frame, numbers.isna(), f"have no {name}")
    return numbers.astype("float64")


def _probabilities(frame: pd.DataFrame) -> pd.Series:
    probs = _numbers(frame, "prob_up")
    _fail(frame, (probs < 0.0) | (probs > 1.0), "have prob_up outside [0, 1]")
    return probs


def _integers(frame: pd.DataFrame, name: str) -> pd.Series:
    numbers = _numbers(frame, name)
    _fail(frame, numbers != numbers.round(), f"have a non-integer {name}")
    return numbers.astype("int64")


def _classes(frame: pd.DataFrame) -> pd.Series:
    classes = _integers(frame, "predicted_class")
    _fail(frame, ~classes.isin([0, 1]), "have a predicted_class other than 0/1")
    return classes


def _horizons(frame: pd.DataFrame) -> pd.Series:
    horizons = _integers(frame, "horizon")
    _fail(frame, horizons < 1, "have a horizon below 1")
    return horizons


def _timestamps(frame: pd.DataFrame) -> pd.Series:
    values = frame["created_at"]
    _fail(frame, values.isna(), "have no created_at")
    try:
        stamps = pd.to_datetime(values, utc=True)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"created_at values cannot be parsed as timestamps: {exc}") from exc
    return stamps.dt.floor("us").astype("datetime64[us, UTC]")


def _check_labels(out: pd.DataFrame) -> None:
    expected = out["predicted_class"].map(dict(enumerate(LABELS)))
    _fail(out, out["label"] != expected, f"have a label that disagrees with the class {LABELS}")


def _check_unique(out: pd.DataFrame) -> None:
    dup = out.duplicated(list(PREDICTION_KEY), keep=False)
    if dup.any():
        raise ValueError(
            f"{int(dup.sum())} predictions share a key {PREDICTION_KEY}: {_rows(out, dup)}"
        )
