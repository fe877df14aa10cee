"""Django's per-request signals: the receivers that do nothing here are gone, the others still run."""

from __future__ import annotations

from django.core import signals
from django.core.cache import close_caches
from django.core.handlers.base import reset_urlconf
from django.db import close_old_connections, reset_queries
from django.test import Client


def receivers(signal) -> list:  # type: ignore[no-untyped-def]
    return [ref() for _, ref, _ in signal.receivers]


def test_idle_receivers_are_disconnected_and_connection_upkeep_stays():
    started, finished = receivers(signals.request_started), receivers(signals.request_finished)
    assert reset_queries not in started  # (DEBUG is off in the tests, as in production)
    assert close_caches not in finished
    assert reset_urlconf not in finished
    assert close_old_connections in started
    assert close_old_connections in finished


def test_a_receiver_connected_later_is_called_and_one_disconnected_is_not(db):
    """The request signals cache their receivers per sender: connecting or disconnecting must clear that."""
    calls: list[str] = []

    def on_start(**kwargs):  # type: ignore[no-untyped-def]
        calls.append("started")

    def on_finish(**kwargs):  # type: ignore[no-untyped-def]
        calls.append("finished")

    client = Client()
    client.get("/")  # fills the caches
    signals.request_started.connect(on_start)
    signals.request_finished.connect(on_finish)
    try:
        assert client.get("/").status_code == 200
        assert calls == ["started", "finished"]
    finally:
        signals.request_started.disconnect(on_start)
        signals.request_finished.disconnect(on_finish)
    client.get("/")
    assert calls == ["started", "finished"]
