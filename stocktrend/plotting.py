"""Matplotlib figures that never touch pyplot's global state.

Flows run in worker threads and processes; pyplot's implicit current figure
and backend switch are process-wide, so every plot here is a bare ``Figure``
on its own Agg canvas.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def new_figure(width: float, height: float) -> Figure:
    """A Figure bound to its own Agg canvas: no pyplot, no global backend switch."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig
