"""The ``ragkit`` command line: ingest, search and eval."""

from ragkit.cli.main import main

__all__ = ["main"]
