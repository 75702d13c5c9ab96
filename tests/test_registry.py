"""Model registry on SQLite and PostgreSQL: first use, promotion, rollback, crashes, the CLI."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
import typer
from typer.testing import CliRunner

from stocktrend import registry
from stocktrend.checkpoint import file_sha256, load_checkpoint, save_checkpoint
from stocktrend.cli_models import register
from stocktrend.config import Settings
from stocktrend.errors import CheckpointError
from stocktrend.features import FEATURE_NAMES
from stocktrend.histograms import reference_histograms
from stocktrend.model import ModelConfig
from stocktrend.models import PROJECT_ROOT, resolve_model
from stocktrend.scaler import Scaler
from stocktrend.storage.engine import make_engine
from stocktrend.storage.evaluations import (
    read_evaluations,
    read_parquet_evaluations,
    record_evaluation,
)
from stocktrend.training import new_model

pytest_plugins = ["db_fixtures"]

PRETRAINED = PROJECT_ROOT / registry.PRETRAINED_CHECKPOINT
TINY = ModelConfig(
    cnn_filters_1=4,
    cnn_filters_2=4,
    cnn_filters_3=4,
    cnn_filters_4=4,
    cnn_filters_5=4,
    lstm_hidden_size=4,
    lstm_num_layers=1,
    transformer_heads=2,
    transformer_ff=8,
    dense_hidden_1=8,
    dense_hidden_2=4,
    dense_hidden_3=4,
)


def tiny_checkpoint(path: Path, version: str, seed: int = 0, accuracy: float = 0.5) -> Path:
    """A small, untrained checkpoint in our format (what a fine-tune would write)."""
    rows = np.random.default_rng(seed).normal(size=(200, len(FEATURE_NAMES)))
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_checkpoint(
        path,
        new_model(TINY, seed),
        config=TINY,
        feature_names=FEATURE_NAMES,
        scaler=Scaler.fit(rows[:, None, :]),
        horizon=10,
        model_version=version,
        training={"data_period": {"start": "2007-01-02", "end": "2008-06-30"}},
        reference_histograms=reference_histograms(rows),
        metrics={"model": {"accuracy": accuracy, "log_loss": 0.69}},
    )


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", database_url=db_url)


@pytest.fixture
def small_pretrained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Stand in a tiny 'v2.0' for the 30 MB pretrained file where its size is not the point."""
    path = tiny_checkpoint(tmp_path / "pretrained" / "best_model_v2.0.ckpt", "v2.0", seed=99)
    monkeypatch.setattr(registry, "PRETRAINED_CHECKPOINT", path)  # absolute: replaces the root
    return path


def test_first_use_registers_the_pretrained_model_as_champion(settings: Settings) -> None:
    path = resolve_model("champion", settings)
    assert path == settings.home / "models" / "v2.0" / "model.ckpt"
    assert file_sha256(path) == file_sha256(PRETRAINED)  # byte-identical copy
    bundle = load_checkpoint(path)  # verified against the registry's model_metadata.json
    assert bundle.model_version == "v2.0" and bundle.sha256 == file_sha256(PRETRAINED)
    [entry] = registry.list_versions(settings)
    assert entry.status == "champion" and entry.aliases == ("champion",)
    assert str(entry.train_end) == bundle.metadata["training"]["periods"]["train_end"]
    assert entry.metrics["model"]["accuracy"] == bundle.metadata["metrics"]["model"]["accuracy"]
    [event] = registry.alias_history(settings)
    assert (event.action, event.version, event.previous_version) == ("initial", "v2.0", None)
    engine = make_engine(settings.resolved_database_url)
    with engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT path FROM model_versions")).scalar()
    engine.dispose()
    assert stored == "models/v2.0/model.ckpt"  # relative to STOCKTREND_HOME


def test_register_promote_and_rollback_chain(
    settings: Settings, small_pretrained: Path, tmp_path: Path
) -> None:
    b = registry.register_version(
        tiny_checkpoint(tmp_path / "b.ckpt", "v2.0-ftb", seed=1), settings, parent_version="v2.0"
    )
    assert (b.status, b.parent_version, b.aliases) == ("registered", "v2.0", ())
    assert (str(b.train_start), str(b.train_end)) == ("2007-01-02", "2008-06-30")
    c = registry.register_version(
        tiny_checkpoint(tmp_path / "c.ckpt", "v2.0-ftc", seed=2), settings, parent_version=b.version
    )
    registry.promote(b.version, settings, reason="better")
    registry.promote(c.version, settings, reason="better still")
    assert registry.resolve_alias("champion", settings) == c.path
    status = {v.version: v.status for v in registry.list_versions(settings)}
    assert status == {"v2.0": "retired", "v2.0-ftb": "retired", "v2.0-ftc": "champion"}

    first = registry.rollback(settings, reason="c misbehaves")
    assert (first.version, first.previous_version) == ("v2.0-ftb", "v2.0-ftc")
    second = registry.rollback(settings, reason="b too")
    assert (second.version, second.previous_version) == ("v2.0", "v2.0-ftb")
    with pytest.raises(registry.RegistryError, match="nothing to roll back"):
        registry.rollback(settings)
    assert registry.resolve_alias("champion", settings).parent.name == "v2.0"
    status = {v.version: v.status for v in registry.list_versions(settings)}
    assert status == {"v2.0": "champion", "v2.0-ftb": "rolled_back", "v2.0-ftc": "rolled_back"}
    actions = [(e.action, e.version) for e in registry.alias_history(settings)]
    assert actions == [
        ("initial", "v2.0"),
        ("promote", "v2.0-ftb"),
        ("promote", "v2.0-ftc"),
        ("rollback", "v2.0-ftb"),
        ("rollback", "v2.0"),
    ]
    assert registry.get_version("v2.0-ftc", settings).decision["reason"] == "c misbehaves"


def test_versions_are_immutable(settings: Settings, small_pretrained: Path, tmp_path: Path) -> None:
    first = tiny_checkpoint(tmp_path / "x.ckpt", "x1", seed=1)
    entry = registry.register_version(first, settings)
    assert registry.register_version(first, settings) == entry  # same bytes: idempotent
    other = tiny_checkpoint(tmp_path / "y.ckpt", "x1", seed=2)
    with pytest.raises(registry.RegistryError, match="immutable"):
        registry.register_version(other, settings)
    bad_name = tiny_checkpoint(tmp_path / "z.ckpt", "../escape", seed=3)
    with pytest.raises(registry.RegistryError, match="cannot be registered"):
        registry.register_version(bad_name, settings)
    with pytest.raises(registry.RegistryError, match="no model version 'ghost'"):
        registry.register_version(first, settings, parent_version="ghost")


def test_crash_inside_promotion_leaves_the_old_champion(
    settings: Settings, small_pretrained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    challenger = registry.register_version(
        tiny_checkpoint(tmp_path / "c.ckpt", "challenger-1", seed=5),
        settings,
        parent_version="v2.0",
        status="challenger",
    )
    champion_before = registry.resolve_alias("champion", settings)

    def crash(*_args, **_kwargs):
        raise RuntimeError("power cut between the status updates and the alias move")

    monkeypatch.setattr(registry, "_move_alias", crash)
    with pytest.raises(RuntimeError, match="power cut"):
        registry.promote(challenger.version, settings)
    assert registry.resolve_alias("champion", settings) == champion_before
    statuses = {v.version: v.status for v in registry.list_versions(settings)}
    assert statuses == {"v2.0": "champion", "challenger-1": "challenger"}  # all rolled back
    assert [e.action for e in registry.alias_history(settings)] == ["initial"]

    monkeypatch.undo()  # the process comes back: the same promotion now succeeds
    monkeypatch.setattr(registry, "PRETRAINED_CHECKPOINT", small_pretrained)
    registry.promote(challenger.version, settings, reason="retry")
    assert registry.resolve_alias("champion", settings) == challenger.path


def test_promotion_refuses_files_that_changed(
    settings: Settings, small_pretrained: Path, tmp_path: Path
) -> None:
    entry = registry.register_version(tiny_checkpoint(tmp_path / "t.ckpt", "t1"), settings)
    with open(entry.path, "ab") as fh:
        fh.write(b"tampered")
    with pytest.raises(registry.RegistryError, match="altered after registration"):
        registry.promote(entry.version, settings)
    assert registry.aliases(settings) == {"champion": "v2.0"}
    with pytest.raises(CheckpointError, match="does not match"):
        load_checkpoint(entry.path)


def test_challenger_alias_and_decisions(
    settings: Settings, small_pretrained: Path, tmp_path: Path
) -> None:
    entry = registry.register_version(tiny_checkpoint(tmp_path / "t.ckpt", "t1"), settings)
    registry.set_alias(registry.CHALLENGER, entry.version, settings, reason="fine-tune")
    assert registry.resolve_alias("challenger", settings) == entry.path
    assert registry.get_version("t1", settings).status == "challenger"
    with pytest.raises(registry.RegistryError, match="only through promote"):
        registry.set_alias(registry.CHAMPION, entry.version, settings)
    decided = registry.record_decision(
        "t1", settings, status="rejected", decision={"reason": "worse log loss", "n": 120}
    )
    assert decided.status == "rejected" and decided.decision == {
        "reason": "worse log loss",
        "n": 120,
    }
    registry.promote("t1", settings, reason="override by risk")
    assert registry.aliases(settings) == {"champion": "t1"}  # challenger alias cleared


def test_concurrent_first_use_makes_one_champion(settings: Settings, small_pretrained: Path):
    results, errors = [], []
    barrier = threading.Barrier(3)

    def first_use() -> None:
        try:
            barrier.wait()
            results.append(registry.resolve_alias("champion", settings))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=first_use) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and len(set(results)) == 1
    assert [e.action for e in registry.alias_history(settings)] == ["initial"]


def test_evaluations_round_trip(settings: Settings) -> None:
    row = {
        "evaluation_id": "00000000-0000-0000-0000-000000000001",
        "flow_run_id": None,
        "evaluated_at": datetime(2009, 1, 2, 22, 0, tzinfo=UTC),
        "as_of_date": "2008-12-31",
        "model_version": "v2.0",
        "model_sha256": "ab" * 32,
        "window_start": "2008-09-23",
        "window_end": "2008-12-16",
        "n_sessions": 60,
        "n_resolved": 360,
        "n_pending": 60,
        "accuracy": 0.47,
        "roc_auc": None,
        "brier": 0.26,
        "log_loss": 0.72,
        "reference_accuracy": 0.52,
        "p_value": 0.03,
        "share_drifted": 0.89,
        "mean_p_up": 0.41,
        "bullish_share": 0.2,
        "decision": "drift",
        "rule": "accuracy and data",
        "report": {"rules_fired": ["accuracy", "data"]},
    }
    record_evaluation(row, settings)
    record_evaluation(row, settings)  # a retried task rewrites, it does not add
    sql = read_evaluations(settings)
    assert len(sql) == 1 and sql.loc[0, "decision"] == "drift"
    assert sql.loc[0, "report"] == {"rules_fired": ["accuracy", "data"]}
    assert str(sql.loc[0, "window_end"]) == "2008-12-16"
    lake = read_parquet_evaluations(settings)
    assert len(lake) == 1 and lake.loc[0, "share_drifted"] == pytest.approx(0.89)


# -- CLI -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_models_cli(
    settings: Settings, small_pretrained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STOCKTREND_HOME", str(settings.home))
    monkeypatch.setenv("STOCKTREND_DATABASE_URL", settings.resolved_database_url)
    monkeypatch.setenv("COLUMNS", "200")  # rich sizes the table to the terminal
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """stocktrend"""

    register(app)
    runner = CliRunner()
    registry.register_version(tiny_checkpoint(tmp_path / "n.ckpt", "v2.1"), settings)
    listed = runner.invoke(app, ["models", "list"])
    assert listed.exit_code == 0, listed.output
    assert "v2.0" in listed.output and "champion" in listed.output and "v2.1" in listed.output
    promoted = runner.invoke(app, ["models", "promote", "v2.1", "--reason", "test"])
    assert promoted.exit_code == 0 and "champion is now v2.1 (was v2.0)" in promoted.output
    rolled = runner.invoke(app, ["models", "rollback"])
    assert rolled.exit_code == 0 and "rolled back to v2.0" in rolled.output
    unknown = runner.invoke(app, ["models", "promote", "v9"])
    assert unknown.exit_code == 2 and "no model version 'v9'" in unknown.output
    assert "Traceback" not in unknown.output


def test_promotion_against_a_stale_champion_is_refused(
    settings: Settings, small_pretrained: Path, tmp_path: Path
) -> None:
    b = registry.register_version(tiny_checkpoint(tmp_path / "b.ckpt", "b1", seed=1), settings)
    c = registry.register_version(tiny_checkpoint(tmp_path / "c.ckpt", "c1", seed=2), settings)
    registry.promote(b.version, settings, reason="manual")
    with pytest.raises(registry.RegistryError, match=r"compared with v2\.0"):
        registry.promote(c.version, settings, replacing="v2.0")
    assert registry.aliases(settings)["champion"] == "b1"
