"""Prefect tasks: thin wrappers over `stocktrend` that pass file paths and small summaries."""
