"""Run summaries as markdown and tables: what a person reads in the Prefect UI or terminal."""

from __future__ import annotations

from typing import Any

import pandas as pd

from stocktrend.scoring import top_and_bottom


def run_summary_markdown(summary: dict[str, Any]) -> str:
    """The run's headline: session(s), model, counts, and why tickers were not scored."""
    lines = [
        f"# {summary['flow']} — {summary['period']}",
        "",
        f"- model: `{summary.get('model_version')}` "
        f"(sha256 `{str(summary.get('model_sha256'))[:16]}…`)",
        f"- source: `{summary.get('source')}`; universe: {summary.get('n_universe')} tickers",
        f"- engine: {summary.get('engine_description') or summary.get('engine') or 'reference'}",
        f"- scored: **{summary.get('n_scored', 0)}** predictions; "
        f"skipped: {len(summary.get('skipped', {}))} tickers; "
        f"failed: {len(summary.get('failed', {}))} tickers",
    ]
    if summary.get("note"):
        lines.append(f"- note: {summary['note']}")
    for title, key in (("Failed", "failed"), ("Skipped", "skipped")):
        items = summary.get(key) or {}
        if items:
            lines += ["", f"## {title}", "", "| ticker | reason |", "|---|---|"]
            lines += [f"| {t} | {_cell(r)} |" for t, r in sorted(items.items())]
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def extremes_table(predictions: pd.DataFrame, n: int = 10) -> list[dict[str, Any]]:
    """Most bullish then most bearish tickers of the latest session, as table rows."""
    top, bottom = top_and_bottom(predictions, n)
    rows = []
    for side, frame in (("most bullish", top), ("most bearish", bottom)):
        for record in frame.itertuples(index=False):
            rows.append(
                {
                    "side": side,
                    "ticker": record.ticker,
                    "as_of_date": str(pd.Timestamp(record.as_of_date).date()),
                    "prob_up": round(float(record.prob_up), 4),
                    "label": record.label,
                }
            )
    return rows


def failure_table(failed: dict[str, str], skipped: dict[str, str]) -> list[dict[str, str]]:
    rows = [{"ticker": t, "status": "failed", "reason": r} for t, r in sorted(failed.items())]
    rows += [{"ticker": t, "status": "skipped", "reason": r} for t, r in sorted(skipped.items())]
    return rows or [{"ticker": "-", "status": "ok", "reason": "every ticker was scored"}]
