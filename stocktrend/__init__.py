"""stocktrend: batch scoring of stock trend predictions.

The domain library. It holds every piece of logic (prices, features, windows,
model, checkpoints, evaluation, storage) as plain functions over data and
config, with no Prefect imports, so that it can be tested and reused without
an orchestrator. ``tasks/`` and ``flows/`` are thin Prefect layers over it.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("stocktrend")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+local"

CLASS_NAMES = ("bearish", "bullish")
"""Class 0 and 1, in English: what prediction rows and reports show."""

SEED_CLASS_NAMES = ("Bajista", "Alcista")
"""The same classes as the seed project named them (Spanish)."""
