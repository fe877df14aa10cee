"""Readiness: the database answers and every migration is applied."""

from __future__ import annotations

from django.db import connection
from django.db.migrations.executor import MigrationExecutor


def readiness_problem() -> str | None:
    """What keeps the service from being ready, or None."""
    try:
        executor = MigrationExecutor(connection)
        pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
    except Exception as exc:  # the database is unreachable: say so, do not crash
        return f"database unavailable: {exc.__class__.__name__}"
    if pending:
        return f"{len(pending)} migration(s) not applied"
    return None
