"""The ``stocktrend`` command line (typer + rich).

User mistakes (unknown ticker, bad date, missing model, no network) end with one
red line and the way out, exit code 2, no traceback; anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations

import functools
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from stocktrend.config import Settings, get_settings
from stocktrend.errors import StocktrendError

app = typer.Typer(
    name="stocktrend",
    help="Batch scoring of stock trend predictions (CNN-BiLSTM-Transformer, Prefect flows).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])


@app.callback()
def _quiet_prefect() -> None:
    """Machines here reach no analytics endpoint; don't let Prefect's server try."""
    import os

    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


def friendly_errors(func: F) -> F:
    """Turn :class:`StocktrendError` (and bad-argument ValueErrors) into one clear line."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except StocktrendError as exc:
            err_console.print(f"[bold red]error:[/] {escape(str(exc))}")
            raise typer.Exit(code=2) from None

    return wrapper  # type: ignore[return-value]


def _settings(source: str | None = None) -> Settings:
    overrides = {"source": source} if source else {}
    return get_settings(**overrides)


def _load_validated(source: str, tickers: list[str] | None, benchmark: str):
    from stocktrend.data import load_prices
    from stocktrend.validation import validate_prices

    wanted = None if tickers is None else sorted(set(tickers) | {benchmark})
    prices = load_prices(source, wanted)
    clean, report = validate_prices(prices)
    for ticker, reason in report.dropped_tickers.items():
        err_console.print(f"[yellow]dropped {escape(ticker)}:[/] {escape(reason)}")
    return clean, report


@app.command()
@friendly_errors
def features(
    source: Annotated[str | None, typer.Option(help="sample | file:PATH | yfinance")] = None,
    tickers: Annotated[str | None, typer.Option(help="Comma-separated tickers")] = None,
) -> None:
    """Build features and windows for a source and print a summary."""
    from stocktrend.features import FEATURE_NAMES, build_features
    from stocktrend.windows import make_windows

    settings = _settings(source)
    wanted = tickers.split(",") if tickers else None
    started = time.perf_counter()
    prices, report = _load_validated(settings.source, wanted, settings.benchmark)
    feats = build_features(prices, benchmark=settings.benchmark)
    X, index = make_windows(feats, seq_len=settings.seq_len)
    seconds = time.perf_counter() - started
    table = Table(title=f"features for source {settings.source!r}")
    for column in ("ticker", "first window", "last window", "windows"):
        table.add_column(column)
    for ticker, group in index.groupby("ticker"):
        dates = group["as_of_date"]
        table.add_row(ticker, str(dates.min().date()), str(dates.max().date()), str(len(group)))
    console.print(table)
    console.print(
        f"{len(prices):,} price rows -> {len(feats):,} feature rows x {len(FEATURE_NAMES)} "
        f"features -> windows {X.shape} {X.dtype} in {seconds:.2f} s; "
        f"skipped {index.attrs.get('skipped')}; validation: {len(report.issues)} issue(s)"
    )


class _TrainingProgress:
    """Rich bars for epochs and batches, fed by the training loop's callback."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.epoch_task: Any = None
        self.batch_task: Any = None

    def __call__(self, event: str, payload: dict[str, Any]) -> None:
        if event == "start":
            self.epoch_task = self.progress.add_task("epochs", total=payload["epochs"])
            self.batch_task = self.progress.add_task("batches", total=payload["batches_per_epoch"])
        elif event == "batch":
            self.progress.update(
                self.batch_task,
                completed=payload["batch"],
                description=f"epoch {payload['epoch']} loss {payload['loss']:.4f}",
            )
        elif event == "epoch":
            self.progress.advance(self.epoch_task)
            self.progress.reset(self.batch_task)
            self.progress.console.print(
                f"epoch {payload['epoch']:>3}  train {payload['train_loss']:.4f}  "
                f"val {payload['val_loss']:.4f}  val acc {payload['val_accuracy']:.3f}  "
                f"lr {payload['learning_rate']:.1e}  {payload['seconds']:.0f}s"
            )


@app.command()
@friendly_errors
def train(
    out: Annotated[Path, typer.Option(help="Checkpoint to write")] = Path(
        "pretrained_models/best_model_v2.0.ckpt"
    ),
    source: Annotated[str | None, typer.Option(help="sample | file:PATH | yfinance")] = None,
    tickers: Annotated[str | None, typer.Option(help="Comma-separated tickers")] = None,
    train_start: str = "2001-01-01",
    train_end: str = "2008-12-31",
    val_end: str = "2010-12-31",
    test_end: str = "2013-02-28",
    model_version: str = "v2.0",
    max_epochs: int = 30,
    patience: int = 5,
    batch_size: int = 128,
    learning_rate: float = 1e-4,
    weight_decay: float = 5e-3,
    seed: int = 42,
    resume: Annotated[Path | None, typer.Option(help="Resume from a state checkpoint")] = None,
    state_out: Annotated[
        Path | None, typer.Option(help="Also write a resumable checkpoint with optimizer state")
    ] = None,
    metadata: Annotated[bool, typer.Option(help="Write model_metadata.json beside --out")] = True,
) -> None:
    """Train the CNN-BiLSTM-Transformer on a source and period; write checkpoint + metadata."""
    from stocktrend.pipeline import Periods, train_model, write_model_metadata
    from stocktrend.training import TrainConfig

    settings = _settings(source)
    prices, _ = _load_validated(
        settings.source, tickers.split(",") if tickers else None, settings.benchmark
    )
    periods = Periods(train_start, train_end, val_end, test_end)
    config = TrainConfig(
        max_epochs=max_epochs,
        early_stopping_patience=patience,
        batch_size=batch_size,
        learning_rate=learning_rate,
        weight_decay=weight_decay,
        seed=seed,
    )
    started = time.perf_counter()
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as bar:
        trained = train_model(
            prices,
            out,
            periods=periods,
            benchmark=settings.benchmark,
            horizon=settings.horizon,
            seq_len=settings.seq_len,
            model_version=model_version,
            train_config=config,
            progress=_TrainingProgress(bar),
            resume_from=resume,
            state_out=state_out,
        )
    wall = time.perf_counter() - started
    console.print(trained.report.to_markdown())
    if metadata:
        command = "stocktrend " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        path = write_model_metadata(out, command=command, report=trained.report, wall_seconds=wall)
        console.print(f"wrote {path}")
    console.print(f"wrote {out} in {wall / 60:.1f} min (best epoch {trained.result.best_epoch})")


DEFAULT_MODEL = Path("pretrained_models/best_model_v2.0.ckpt")


def _load_bundle(model: Path):
    from stocktrend.checkpoint import load_checkpoint
    from stocktrend.errors import CheckpointError

    if not model.exists():
        raise CheckpointError(
            f"no checkpoint at {model}",
            hint="pass --model PATH, or train one with `stocktrend train`",
        )
    return load_checkpoint(model)


def _periods_of(bundle) -> Any:
    from stocktrend.pipeline import Periods

    stored = bundle.metadata.get("training", {}).get("periods")
    return Periods(**stored) if stored else Periods()


def _evaluate_bundle(bundle, source: str | None):
    from stocktrend.pipeline import evaluate_checkpoint

    settings = _settings(source)
    prices, _ = _load_validated(settings.source, None, settings.benchmark)
    return evaluate_checkpoint(
        bundle, prices, periods=_periods_of(bundle), benchmark=settings.benchmark
    )


@app.command()
@friendly_errors
def evaluate(
    model: Annotated[Path, typer.Option(help="Checkpoint to evaluate")] = DEFAULT_MODEL,
    source: Annotated[str | None, typer.Option(help="sample | file:PATH | yfinance")] = None,
    out: Annotated[Path | None, typer.Option(help="Report directory")] = None,
) -> None:
    """Evaluate a checkpoint on its held-out test period, with baselines side by side."""
    import json

    bundle = _load_bundle(model)
    with console.status("scoring the test period..."):
        report, _test, _p = _evaluate_bundle(bundle, source)
    target = out or _settings().home / "reports" / bundle.model_version
    report.to_json(target / "report.json")
    (target / "report.md").write_text(report.to_markdown() + "\n")
    plots = report.save_plots(target)
    console.print(report.to_markdown())
    meta_path = model.with_name("model_metadata.json")
    if meta_path.exists():
        published = json.loads(meta_path.read_text())["performance"]["model"]["accuracy"]
        measured = report.model.accuracy
        console.print(
            f"published accuracy {published:.4f}, measured {measured:.4f}, "
            f"difference {100 * (measured - published):+.2f} pp"
        )
    console.print(f"wrote {target / 'report.json'}, report.md and {len(plots)} plots")


@app.command()
@friendly_errors
def demo(
    model: Annotated[Path, typer.Option(help="Checkpoint")] = DEFAULT_MODEL,
    examples: int = 10,
) -> None:
    """The seed's load_pretrained_model.py: evaluate the pretrained model, show predictions."""
    import numpy as np

    from stocktrend.evaluation import format_confusion_matrix

    bundle = _load_bundle(model)
    console.print(
        f"loaded {model} (version {bundle.model_version}, sha256 {bundle.sha256[:12]}..., "
        f"{len(bundle.feature_names)} features x {bundle.sequence_length} sessions)"
    )
    with console.status("evaluating on the held-out test period..."):
        report, test, p_up = _evaluate_bundle(bundle, "sample")
    console.print(
        f"test period {report.period_start}..{report.period_end}, {report.n_samples:,} windows"
    )
    console.print(format_confusion_matrix(np.asarray(report.model.confusion_matrix)))
    table = Table(title="baselines on the same windows")
    for column in ("predictor", "accuracy", "balanced acc", "ROC AUC", "log loss"):
        table.add_column(column)
    rows = {"model": report.model, **report.baselines}
    for name, m in rows.items():
        auc = "—" if m.roc_auc is None else f"{m.roc_auc:.3f}"
        table.add_row(
            name, f"{m.accuracy:.3f}", f"{m.balanced_accuracy:.3f}", auc, f"{m.log_loss:.3f}"
        )
    console.print(table)
    picks = np.linspace(0, len(test) - 1, num=min(examples, len(test))).astype(int)
    sample = Table(title="example predictions")
    for column in ("ticker", "as of", "P(up)", "prediction", "confidence", "actual"):
        sample.add_column(column)
    names = ("Bajista (bearish)", "Alcista (bullish)")
    for i in picks:
        p = float(p_up[i])
        predicted = int(p > 0.5)
        sample.add_row(
            str(test.index["ticker"].iloc[i]),
            str(test.index["as_of_date"].iloc[i].date()),
            f"{p:.3f}",
            names[predicted],
            f"{max(p, 1 - p):.1%}",
            names[int(test.y[i])] + (" ✓" if predicted == test.y[i] else " ✗"),
        )
    console.print(sample)


def _flow_summary_table(summary: dict[str, Any]) -> None:
    for title, key in (("failed", "failed"), ("skipped", "skipped")):
        items = summary.get(key) or {}
        if items:
            table = Table(title=f"{title} tickers")
            table.add_column("ticker")
            table.add_column("reason")
            for ticker, reason in sorted(items.items()):
                table.add_row(ticker, escape(str(reason)))
            console.print(table)


def _check_date(value: str | None, name: str) -> str | None:
    import pandas as pd

    from stocktrend.errors import ConfigError

    if value is None:
        return None
    try:
        return str(pd.Timestamp(value).date())
    except (ValueError, TypeError):
        raise ConfigError(f"{name} {value!r} is not a date", hint="use YYYY-MM-DD") from None


@app.command()
@friendly_errors
def score(
    as_of: Annotated[str | None, typer.Option(help="Session to score (YYYY-MM-DD)")] = None,
    universe: Annotated[
        str | None, typer.Option(help="Comma-separated tickers, or a file of tickers")
    ] = None,
    source: Annotated[str | None, typer.Option(help="sample | file:PATH | yfinance")] = None,
    model: Annotated[str | None, typer.Option(help="Checkpoint path (or an alias)")] = None,
    engine: EngineOption = None,
) -> None:
    """Run the daily-scoring flow for one session."""
    from flows.daily_scoring import daily_scoring

    summary = daily_scoring(
        as_of=_check_date(as_of, "--as-of"),
        universe=universe,
        source=source,
        model=model,
        engine=_check_engine(engine),
    )
    if not isinstance(summary, dict):  # a non-session day ends Completed with a message
        console.print(getattr(summary, "message", str(summary)))
        return
    _flow_summary_table(summary)
    console.print(
        f"scored {summary['n_scored']} tickers on {summary['session']} with "
        f"{summary['model_version']} ({summary['engine_description']})"
    )
    _print_predictions(as_of=summary["session"])


EngineOption = Annotated[
    str | None,
    typer.Option(
        help="Inference engine: reference | auto | bf16 | onnx | int8 | int8-conv | torch-int8 "
        "(default: STOCKTREND_ENGINE, else reference)"
    ),
]


def _check_engine(engine: str | None) -> str | None:
    """Refuse an unknown engine before any flow starts (the flow would fail only at scoring)."""
    from typing import get_args

    from stocktrend.config import EngineName
    from stocktrend.errors import ConfigError

    if engine is not None and engine not in get_args(EngineName):
        raise ConfigError(
            f"unknown engine {engine!r}", hint=f"choose one of {', '.join(get_args(EngineName))}"
        )
    return engine


def _backfill_bar(
    start: str, end: str, universe, source, model, overwrite: bool, engine: str | None = None
) -> dict:
    """Run the backfill flow in a worker thread; draw its progress from the chunk markers."""
    import threading

    from flows.backfill import backfill as backfill_flow
    from flows.daily_scoring import DEFAULT_UNIVERSE
    from stocktrend.backfill import is_done, plan_chunks
    from stocktrend.calendar import sessions as nyse_sessions
    from stocktrend.checkpoint import load_checkpoint
    from stocktrend.models import resolve_model
    from stocktrend.scoring import parse_universe, split_valid_tickers

    settings = get_settings()
    tickers, _ = split_valid_tickers(parse_universe(universe, DEFAULT_UNIVERSE))
    version = load_checkpoint(resolve_model(model or settings.model, settings)).model_version
    chunks = plan_chunks(nyse_sessions(start, end), tickers)
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["summary"] = backfill_flow(
                start=start,
                end=end,
                universe=universe,
                source=source,
                model=model,
                overwrite=overwrite,
                engine=engine,
            )
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=work, daemon=True)
    with Progress(
        TextColumn("backfill {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as bar:
        task_id = bar.add_task(f"{start}..{end}", total=len(chunks))
        thread.start()
        while thread.is_alive():
            thread.join(timeout=0.5)
            done = sum(is_done(settings.predictions_dir, version, c) for c in chunks)
            bar.update(task_id, completed=done)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["summary"]


@app.command()
@friendly_errors
def backfill(
    start: Annotated[str, typer.Option(help="First date (YYYY-MM-DD)")],
    end: Annotated[str, typer.Option(help="Last date (YYYY-MM-DD)")],
    universe: Annotated[
        str | None, typer.Option(help="Comma-separated tickers, or a file of tickers")
    ] = None,
    source: Annotated[str | None, typer.Option(help="sample | file:PATH | yfinance")] = None,
    model: Annotated[str | None, typer.Option(help="Checkpoint path (or an alias)")] = None,
    overwrite: Annotated[bool, typer.Option(help="Redo chunks already written")] = False,
    engine: EngineOption = None,
) -> None:
    """Run the backfill flow over a date range (resumable; skips chunks already written)."""
    start_day, end_day = _check_date(start, "--start"), _check_date(end, "--end")
    summary = _backfill_bar(
        start_day, end_day, universe, source, model, overwrite, _check_engine(engine)
    )
    _flow_summary_table(summary)
    console.print(
        f"backfill {summary['period']}: {summary['n_scored']} predictions written "
        f"({summary['n_chunks_skipped']}/{summary['n_chunks']} chunks were already done; "
        f"{summary['engine_description']})"
    )


def _print_predictions(ticker: str | None = None, as_of: str | None = None, limit: int = 50):
    from stocktrend.storage import PredictionStore

    store = PredictionStore(get_settings().resolved_database_url)
    frame = store.read_predictions(ticker=ticker, as_of=as_of)
    if as_of is None and ticker is None:
        frame = store.latest_per_ticker()
    frame = frame.sort_values(["as_of_date", "ticker"], ascending=[False, True]).head(limit)
    table = Table(title="predictions")
    for column in ("as_of_date", "ticker", "prob_up", "label", "model_version"):
        table.add_column(column)
    for row in frame.itertuples(index=False):
        table.add_row(
            str(row.as_of_date)[:10],
            row.ticker,
            f"{row.prob_up:.4f}",
            row.label,
            row.model_version,
        )
    console.print(table)


@app.command()
@friendly_errors
def predictions(
    ticker: Annotated[str | None, typer.Option(help="One ticker's history")] = None,
    as_of: Annotated[str | None, typer.Option(help="One session")] = None,
    limit: int = 50,
) -> None:
    """Print predictions from SQL (default: the latest per ticker)."""
    _print_predictions(
        ticker=ticker.upper() if ticker else None,
        as_of=_check_date(as_of, "--as-of"),
        limit=limit,
    )


@app.command()
@friendly_errors
def run(
    source: Annotated[str | None, typer.Option(help="sample | file:PATH | yfinance")] = None,
    sessions: Annotated[int, typer.Option(help="Sessions to backfill")] = 60,
    universe: Annotated[str | None, typer.Option(help="Comma-separated tickers")] = None,
    engine: EngineOption = None,
) -> None:
    """The main job: backfill the last N sessions of the source, score the last one, show it."""
    from flows.daily_scoring import daily_scoring
    from stocktrend import calendar
    from stocktrend.data import load_prices
    from stocktrend.storage.queries import duckdb_glob

    engine = _check_engine(engine)
    settings = _settings(source)
    last = load_prices(settings.source, [settings.benchmark])["date"].max()
    first = calendar.session_offset(last, -(sessions - 1))
    console.rule(f"backfill {first.date()}..{last.date()} ({sessions} sessions)")
    summary = _backfill_bar(
        str(first.date()), str(last.date()), universe, settings.source, None, False, engine
    )
    console.print(f"backfill: {summary['n_scored']} predictions ({summary['period']})")
    console.rule(f"daily-scoring {last.date()}")
    daily = daily_scoring(
        as_of=str(last.date()), universe=universe, source=settings.source, engine=engine
    )
    _flow_summary_table(daily)
    _print_predictions(as_of=daily["session"])
    db = settings.resolved_database_url
    console.rule("query the predictions")
    console.print(f"SQL store: {db}")
    if db.startswith("sqlite:///"):
        console.print(
            f'  sqlite3 {db.removeprefix("sqlite:///")} "SELECT as_of_date, ticker, prob_up, '
            f"label FROM predictions WHERE as_of_date = '{last.date()}' ORDER BY prob_up DESC;\"",
            markup=False,
            soft_wrap=True,
        )
    console.print(f"Parquet dataset: {settings.predictions_dir}")
    console.print(
        f'  duckdb -c "SELECT ticker, as_of_date, prob_up, label FROM read_parquet('
        f"'{duckdb_glob(settings.predictions_dir)}', hive_partitioning=true) "
        f'ORDER BY as_of_date DESC, ticker LIMIT 20"',
        markup=False,
        soft_wrap=True,
    )
    console.print(
        '  python -c "import pandas as pd; print(pd.read_parquet('
        f"'{settings.predictions_dir}').tail())\"",
        markup=False,
        soft_wrap=True,
    )


@app.command()
@friendly_errors
def drift(
    as_of: Annotated[str | None, typer.Option(help="Evaluate as of this session")] = None,
    model: Annotated[str, typer.Option(help="Version alias or checkpoint path")] = "champion",
    source: Annotated[str | None, typer.Option(help="sample | file:PATH | yfinance")] = None,
    fine_tune: Annotated[
        bool, typer.Option(help="Run fine-tuning here when drift is detected")
    ] = True,
) -> None:
    """Run the evaluate-drift flow: realised accuracy and feature drift of a model."""
    from flows.evaluate_drift import evaluate_drift

    summary = evaluate_drift(
        as_of=_check_date(as_of, "--as-of"),
        model=model,
        source=source,
        fine_tune_on_drift=fine_tune,
    )
    console.print(
        f"{summary['model_version']} as of {summary['as_of']}: [bold]{summary['decision']}[/] "
        f"({escape(str(summary['rule']))}); {summary['n_resolved']} resolved predictions, "
        f"{summary['n_pending']} pending; {summary['n_outcomes_recorded']} outcomes recorded "
        "in the `outcomes` table (hit rates: README, Querying predictions)"
    )
    if summary.get("fine_tune"):
        outcome = summary["fine_tune"]
        reason = outcome if isinstance(outcome, str) else outcome["decision"]["reason"]
        console.print(f"fine-tune: {escape(str(reason))}")


@app.command("fine-tune")
@friendly_errors
def fine_tune_command(
    as_of: Annotated[str | None, typer.Option(help="Last session with a known label")] = None,
    source: Annotated[str | None, typer.Option(help="sample | file:PATH | yfinance")] = None,
    learning_rate: float = 5e-5,
    max_epochs: int = 3,
) -> None:
    """Run the fine-tune flow: challenger from the champion; promoted only if measurably better."""
    from flows.fine_tune import fine_tune

    summary = fine_tune(
        as_of=_check_date(as_of, "--as-of"),
        source=source,
        learning_rate=learning_rate,
        max_epochs=max_epochs,
    )
    verdict = "promoted" if summary["promoted"] else "kept the champion"
    console.print(
        f"challenger {summary['challenger']} (parent {summary['parent']}): {verdict}; "
        f"{escape(str(summary['decision']['reason']))}"
    )


def _register_subcommands() -> None:
    """Command groups that live in their own modules (models registry, serve, export)."""
    from stocktrend import cli_export, cli_models, cli_serve

    cli_models.register(app)
    cli_serve.register(app)
    cli_export.register(app)


_register_subcommands()


def main() -> None:  # pragma: no cover - console entry point
    app()
