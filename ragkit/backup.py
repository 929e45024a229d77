"""Backups of ragkit stores: ``HybridStore.backup(dest)`` writes one, ``restore`` turns one
into a store of its own (``ragkit backup`` and ``ragkit restore`` on the command line).

A backup is crash-consistent and taken while writes go on: each record log is copied by
SQLite's online backup in one read transaction (every write committed before it began, no
batch in part), with the checkpoint that log names. See SECURITY.md for what it guarantees.
"""

from __future__ import annotations

from ragkit.backends.local._backup import BACKUP_FILE, restore

__all__ = ["BACKUP_FILE", "restore"]
