"""The queries of every quantize / dequantize request, written as SQL.

Measured with py-spy on the spec's small example: Django assembling a select_related() SELECT and an F()-expression
UPDATE took more than half of the request's CPU (about 1.4 ms; the queries themselves 0.05 ms), which kept small
requests below 40 % of GET /'s rate. The SQL is built from the models' metadata, values go through the model
fields' own conversions, and the statements are the ones the ORM would issue (checked on SQLite and PostgreSQL).
Both run on the DB-API cursor of Django's open connection (`_execute`), past Django's cursor wrappers (another
tenth of the request); everything else uses the ORM.

A quantize on a worker that already holds the instance's engine object is one statement:
the UPDATE of record_stats, made conditional on the stored state that object was built from (`state`), in place of
the SELECT before the run and the UPDATE after it (services.instance_run runs again the full way when nothing
matched). A quantize_dequantize (with optimize_memory it overwrites its input: it could not run again) and a
dequantize (it needs the stored latest parameters first) keep the SELECT.
"""

from __future__ import annotations

import functools
from typing import Any

from django.db import connections, router, transaction
from django.db.backends.base.base import BaseDatabaseWrapper

from engine import COUNTERS, QUALITY_COUNTERS, QUALITY_LATEST, OpResult, Quantizer, quality_delta

from . import registry
from .models import QuantizerInstance, QuantizerStats
from .selectors import check_instance_id, instance_get

# The instance's columns an engine object is built from (registry.Registry.current's uid, version, cache epoch).
STATE = ("uid", "version", "cache_epoch")


@functools.cache
def _select_sql(alias: str, last_params: bool) -> str:
    """The SELECT of run_state, written once per database alias (and with or without the latest parameters)."""
    instance_meta, stats_meta = QuantizerInstance._meta, QuantizerStats._meta
    qn = connections[alias].ops.quote_name
    instances, stats = qn(instance_meta.db_table), qn(stats_meta.db_table)
    columns = ", ".join(
        [f"{instances}.{qn(instance_meta.get_field(name).column)}" for name in STATE]
        + ([f"{stats}.{qn(stats_meta.get_field('last_params').column)}"] if last_params else [])
    )
    instance_pk = f"{instances}.{qn(instance_meta.pk.column)}"
    return (f"SELECT {columns} FROM {instances} INNER JOIN {stats} ON {stats}.{qn(stats_meta.pk.column)} = "
            f"{instance_pk} WHERE {instance_pk} = %s")


@functools.cache
def _update_sql(alias: str, added: tuple[str, ...], stored: tuple[str, ...], lowest: tuple[str, ...] = (),
                checked: bool = False) -> str:
    """The UPDATE of record_stats for these added, stored and lowest-kept columns, written once per combination (a
    handful). A lowest-kept column takes the new value when it is null or greater (a CASE both databases run, where
    LEAST / MIN(a, b) differ on nulls); its value is given twice. `checked`: only while the instance row still has
    the uid, version and cache epoch given after the stats row's key (an EXISTS both databases run)."""
    meta = QuantizerStats._meta
    qn = connections[alias].ops.quote_name
    table = qn(meta.db_table)

    def column(name: str) -> str:
        return f"{table}.{qn(meta.get_field(name).column)}"

    assignments = [f"{qn(meta.get_field(name).column)} = ({column(name)} + %s)" for name in added]
    assignments += [f"{qn(meta.get_field(name).column)} = %s" for name in stored]
    assignments += [f"{qn(meta.get_field(name).column)} = CASE WHEN {column(name)} IS NULL OR {column(name)} > %s "
                    f"THEN %s ELSE {column(name)} END" for name in lowest]
    sql = f"UPDATE {table} SET {', '.join(assignments)} WHERE {table}.{qn(meta.pk.column)} = %s"
    if checked:
        instance_meta = QuantizerInstance._meta
        instances = qn(instance_meta.db_table)
        conditions = " AND ".join(f"{instances}.{qn(instance_meta.get_field(name).column)} = %s"
                                  for name in (instance_meta.pk.name, *STATE))
        sql += f" AND EXISTS (SELECT 1 FROM {instances} WHERE {conditions})"
    return sql


def run_state(instance_id: str, *, last_params: bool = True) -> tuple[Quantizer, Any]:
    """This worker's engine object and the stored parameters of the latest quantize (None unless `last_params`:
    only a dequantize uses them), from one SELECT of the columns a run needs; the full row (instance_get,
    registry.get) only when the engine object is missing or stale, or the row is not found (which then raises as
    before)."""
    check_instance_id(instance_id)
    connection = connections[router.db_for_read(QuantizerInstance)]
    rows, _ = _execute(connection, _select_sql(connection.alias, last_params), [instance_id])
    row = rows[0] if rows else None
    if row is not None:
        uid = _uid(row[0])
        quantizer = registry.active().current(instance_id, uid, int(row[1]), int(row[2]))
        if quantizer is not None:
            return quantizer, _LAST_PARAMS.from_db_value(row[3], None, connection) if last_params else None
    instance = instance_get(instance_id)
    return registry.active().get(instance), instance.stats.last_params if last_params else None


def record_stats(instance_id: str, result: OpResult, *, quantized: bool, state: tuple[Any, ...] | None = None
                 ) -> bool:
    """One UPDATE: the counters added in SQL, as F() expressions would be, and the parameters used stored; with a
    quality report, its counters added, its SQNR stored as the latest and kept if lowest, in the same UPDATE.
    With `state` (uid, version, cache epoch: registry.Registry.known), only if the instance row still has it.
    Whether a row was updated."""
    delta = result.delta
    added: dict[str, Any] = {name: getattr(delta, name) for name in COUNTERS if getattr(delta, name)}
    added["processing_time_ms"] = delta.processing_time_ms
    stored: dict[str, Any] = {}
    lowest: dict[str, Any] = {}
    if delta.last_scale is not None:
        stored["last_scale"] = delta.last_scale
        stored["last_zero_point"] = delta.last_zero_point
    if quantized and result.params is not None:
        stored["last_params"] = result.params.to_dict()
    if result.report is not None:
        for name, value in quality_delta(result.report).items():
            if name in QUALITY_COUNTERS:
                added[name] = value
            elif name in QUALITY_LATEST:
                stored[name] = value
            elif value is not None:  # an exact reconstruction (null SQNR) never lowers the lowest
                lowest[name] = value
    connection = connections[router.db_for_write(QuantizerStats)]
    params = [_PREP_SAVE[name](value, connection)
              for name, value in [*added.items(), *stored.items(), *[(n, v) for n, v in lowest.items()
                                                                   for _ in range(2)]]]
    sql = _update_sql(connection.alias, tuple(added), tuple(stored), tuple(lowest), state is not None)
    if state is not None:
        params += [instance_id, instance_id, _UID.get_db_prep_value(state[0], connection), *state[1:]]
    else:
        params.append(instance_id)
    with transaction.mark_for_rollback_on_error(using=connection.alias):
        return _execute(connection, sql, params)[1] > 0


def _execute(connection: BaseDatabaseWrapper, sql: str, params: list[Any]) -> tuple[list[tuple[Any, ...]], int]:
    """Run `sql` on the connection's DB-API cursor and return its rows (none for an UPDATE) and its row count (an
    UPDATE's), as Django's cursor would, less its per-statement layers: the connection opened (or replaced after a
    failed health check) as before, used by its own thread only, a broken atomic block refused, driver errors
    mapped to Django's (which marks the connection for closing at the request's end), and the statement in
    whatever transaction the connection is in (autocommit: committed when it returns). fetchall() ends the
    statement: a SELECT left open would keep SQLite's read snapshot into the next request. With queries logged
    (DEBUG, a test counting them) or an execute wrapper installed (instrumentation), Django's cursor runs it, so
    that they see it."""
    if connection.queries_logged or connection.execute_wrappers:
        with connection.cursor() as cursor:
            return _rows(cursor, sql, params)
    connection.close_if_health_check_failed()
    if connection.connection is None:
        connection.ensure_connection()
    connection.validate_thread_sharing()
    connection.validate_no_broken_transaction()
    with connection.wrap_database_errors:
        return _rows(_cursor(connection), _driver_sql(sql, connection.vendor), params)


def _cursor(connection: BaseDatabaseWrapper) -> Any:
    """A DB-API cursor of the open connection (a function of its own: the tests' database outage replaces it)."""
    return connection.connection.cursor()


@functools.cache
def _driver_sql(sql: str, vendor: str) -> str:
    """`sql` in the driver's parameter style, once per statement: sqlite3 takes `?` (Django's SQLite cursor rewrote
    each `%s` on every execute), psycopg `%s`. (No statement here holds a literal `%`.)"""
    return sql.replace("%s", "?") if vendor == "sqlite" else sql


def _rows(cursor: Any, sql: str, params: list[Any]) -> tuple[list[tuple[Any, ...]], int]:
    cursor.execute(sql, params)
    return (cursor.fetchall(), -1) if cursor.description else ([], cursor.rowcount)


@functools.lru_cache(maxsize=1024)
def _uid(stored: Any) -> Any:
    """The uid column's value as the model field reads it (a UUID from SQLite's text), once per value: every request
    reads the same few."""
    return _UID.to_python(stored)


_UID = QuantizerInstance._meta.get_field("uid")
_LAST_PARAMS = QuantizerStats._meta.get_field("last_params")
_PREP_SAVE = {field.name: field.get_db_prep_save for field in QuantizerStats._meta.concrete_fields}
