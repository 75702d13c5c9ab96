"""``stocktrend models list|promote|rollback``: the model registry from the command line.

:func:`register` adds the ``models`` sub-command group to the main typer app.
Registry and storage problems end with one red line and exit code 2, like the
rest of the CLI.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from stocktrend.errors import StocktrendError

F = TypeVar("F", bound=Callable[..., Any])


def _friendly(err: Console) -> Callable[[F], F]:
    def decorate(func: F) -> F:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return func(*args, **kwargs)
            except StocktrendError as exc:
                err.print(f"[bold red]error:[/] {escape(str(exc))}")
                raise typer.Exit(code=2) from None

        return wrapper  # type: ignore[return-value]

    return decorate


def _figure(metrics: dict[str, Any], key: str) -> str:
    value = (metrics.get("model") or {}).get(key)
    return "—" if value is None else f"{value:.3f}"


def versions_table(versions: list[Any]) -> Table:
    """One row per registered version, oldest first."""
    table = Table(title="model versions")
    for column in (
        "version",
        "aliases",
        "status",
        "parent",
        "trained on",
        "accuracy",
        "log loss",
        "sha256",
        "registered",
    ):
        table.add_column(column)
    for v in versions:
        period = f"{v.train_start or '?'}..{v.train_end or '?'}"
        table.add_row(
            escape(v.version),
            ", ".join(v.aliases),
            v.status,
            escape(v.parent_version or "—"),
            period,
            _figure(v.metrics, "accuracy"),
            _figure(v.metrics, "log_loss"),
            v.sha256[:12],
            v.created_at.strftime("%Y-%m-%d %H:%M"),
        )
    return table


def register(app: typer.Typer) -> None:
    """Add the ``models`` group (list, promote, rollback) to ``app``."""
    console, err = Console(), Console(stderr=True)
    friendly = _friendly(err)
    models = typer.Typer(name="models", help="Model registry: versions and aliases.")

    @models.command("list")
    @friendly
    def list_command() -> None:
        """Registered versions with their aliases, status, lineage and headline metrics."""
        from stocktrend import registry
        from stocktrend.config import get_settings

        console.print(versions_table(registry.list_versions(get_settings())))

    @models.command("promote")
    @friendly
    def promote_command(
        version: Annotated[str, typer.Argument(help="Registered version to make champion")],
        reason: Annotated[str, typer.Option(help="Why (kept in the audit trail)")] = "manual",
    ) -> None:
        """Make VERSION the champion (one transaction; the old champion is retired)."""
        from stocktrend import registry
        from stocktrend.config import get_settings

        change = registry.promote(version, get_settings(), reason=reason)
        was = escape(change.previous_version or "—")
        console.print(f"champion is now {escape(change.version)} (was {was})")

    @models.command("rollback")
    @friendly
    def rollback_command(
        reason: Annotated[str, typer.Option(help="Why (kept in the audit trail)")] = "manual",
    ) -> None:
        """Put back the champion the current one replaced."""
        from stocktrend import registry
        from stocktrend.config import get_settings

        change = registry.rollback(get_settings(), reason=reason)
        console.print(
            f"champion rolled back to {escape(change.version)} "
            f"(was {escape(change.previous_version or '—')})"
        )

    app.add_typer(models, name="models")
