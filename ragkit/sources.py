"""Moved to ``ragkit.ingest.sources``: ingestion owns reading sources (this name goes away in
ragkit 0.3)."""

from __future__ import annotations

import warnings
from typing import Any


def __getattr__(name: str) -> Any:
    if name.startswith("__"):  # the import system's probes
        raise AttributeError(name)
    from ragkit.ingest import sources

    warnings.warn(
        f"ragkit.sources.{name} is now ragkit.ingest.sources.{name} (ragkit.sources goes away "
        "in ragkit 0.3)",
        DeprecationWarning,
        stacklevel=2,
    )
    return getattr(sources, name)
