"""SQLite transactions as the exporter's state database writes them (queue rows and delta state)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["immediate_transaction"]


@contextmanager
def immediate_transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` (the write lock at once, not at the first write) … ``COMMIT``.

    On any error the transaction is rolled back only if it is still open: SQLite rolls back by itself on some
    errors (a full disk during ``COMMIT``), and a second ``ROLLBACK`` would fail with "no transaction is
    active", hiding the real error."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
