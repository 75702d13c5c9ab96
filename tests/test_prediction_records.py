"""validate_predictions: the one gate every store's rows pass, on the way in and out."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest
from prediction_samples import prediction_frame

from stocktrend.storage.records import (
    PREDICTION_COLUMNS,
    PREDICTION_DTYPES,
    empty_predictions,
    validate_predictions,
)

DAYS = pd.bdate_range("2024-03-04", periods=2)


def test_coerces_to_contract_dtypes_and_drops_extras() -> None:
    raw = prediction_frame(DAYS).astype({"horizon": "int32", "predicted_class": "float64"})
    raw["as_of_date"] = [d.date().isoformat() for d in raw["as_of_date"]]
    raw["created_at"] = raw["created_at"].dt.tz_localize(None)  # naive is read as UTC
    raw["window_start"] = "ignored"
    out = validate_predictions(raw.set_index("ticker", drop=False))
    assert list(out.columns) == list(PREDICTION_COLUMNS)
    assert out.dtypes.astype(str).to_dict() == {
        name: str(pd.Series([], dtype=dtype).dtype) for name, dtype in PREDICTION_DTYPES.items()
    }
    assert out["as_of_date"].iloc[0] == DAYS[0]
    assert str(out["created_at"].dt.tz) == "UTC"
    assert out.index.equals(pd.RangeIndex(len(out)))


def test_empty_frame_has_contract_dtypes() -> None:
    empty = empty_predictions()
    assert list(empty.columns) == list(PREDICTION_COLUMNS)
    pd.testing.assert_frame_equal(validate_predictions(empty), empty)


def test_missing_flow_run_id_is_allowed() -> None:
    out = validate_predictions(prediction_frame(DAYS, flow_run_id=None))
    assert out["flow_run_id"].isna().all()


def _broken(column: str, value: object) -> pd.DataFrame:
    frame = prediction_frame(DAYS)
    frame[column] = frame[column].astype(object)
    frame.loc[3, column] = value
    return frame


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("prob_up", float("nan"), "no prob_up"),
        ("prob_up", 1.2, r"outside \[0, 1\]"),
        ("prob_up", -0.1, r"outside \[0, 1\]"),
        ("predicted_class", 2, "other than 0/1"),
        ("label", "bullish!", "disagrees"),
        ("horizon", 0, "below 1"),
        ("ticker", None, "no ticker"),
        ("model_version", " ", "no model_version"),
        ("model_version", "v" * 129, "longer than 128"),
        ("as_of_date", pd.Timestamp("2024-03-04 15:30"), "time of day"),
        ("created_at", None, "no created_at"),
    ],
)
def test_rejects_bad_values_naming_the_rows(column: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message) as raised:
        validate_predictions(_broken(column, value))
    if column != "ticker":
        assert "@2024-03-04" in str(raised.value)


def test_rejects_missing_columns() -> None:
    with pytest.raises(ValueError, match="missing columns: model_sha256"):
        validate_predictions(prediction_frame(DAYS).drop(columns="model_sha256"))


def test_rejects_duplicate_keys() -> None:
    frame = prediction_frame(DAYS)
    doubled = pd.concat([frame, frame.iloc[[0]]], ignore_index=True)
    with pytest.raises(ValueError, match="share a key"):
        validate_predictions(doubled)
    other_model = frame.iloc[[0]].assign(model_version="v2.1")
    assert len(validate_predictions(pd.concat([frame, other_model]))) == len(frame) + 1


def test_rejects_timezone_aware_dates() -> None:
    frame = prediction_frame(DAYS)
    frame["as_of_date"] = frame["as_of_date"].dt.tz_localize("America/New_York")
    with pytest.raises(ValueError, match="without a timezone"):
        validate_predictions(frame)


def test_accepts_python_dates() -> None:
    frame = prediction_frame(DAYS)
    frame["as_of_date"] = [date(2024, 3, 4)] * 8 + [date(2024, 3, 5)] * 8
    assert validate_predictions(frame)["as_of_date"].iloc[-1] == DAYS[1]
