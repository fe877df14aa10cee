"""Django's per-request signal receivers that do nothing in this service's configuration, disconnected once at
start-up: each is called on every request (about a tenth of GET /'s time in process went to the two signals)."""

from __future__ import annotations

from django.conf import settings
from django.core import signals
from django.core.cache import close_caches
from django.core.handlers.base import reset_urlconf
from django.db import reset_queries
from django.dispatch import Signal

# Cache backends whose close() does nothing (Django's default, local memory, among them).
NOTHING_TO_CLOSE = frozenset({"django.core.cache.backends.locmem.LocMemCache",
                              "django.core.cache.backends.dummy.DummyCache"})


def disconnect_idle_receivers() -> None:
    """Disconnect the receivers below, and let the two request signals cache their receivers (see
    cache_receivers)."""
    _disconnect()
    for signal in (signals.request_started, signals.request_finished):
        cache_receivers(signal)


def cache_receivers(signal: Signal) -> None:
    """A Signal built with use_caching=True keeps its receivers list per sender, cleared by every connect and
    disconnect; the request signals are built without it, so each send walked the receivers under a lock (a few
    percent of GET /). Same receivers called, in the same order."""
    if not signal.use_caching:
        signal.sender_receivers_cache = {}  # (not weak, as Django's is: the senders are a handler class or None)
        signal.use_caching = True


def _disconnect() -> None:
    """reset_queries empties the query log, which is written only with DEBUG on (a test's
    CaptureQueriesContext empties it itself); close_caches closes cache connections, which no configured backend
    has; reset_urlconf undoes a per-request URLconf (request.urlconf), which nothing here sets (each request
    sets the thread's URLconf to ROOT_URLCONF again, which is what an unset one means). close_old_connections
    stays: it applies CONN_MAX_AGE and closes a connection left broken.
    (Importing each receiver's module above connects it first, so that it is there to disconnect.)"""
    if not settings.DEBUG:
        signals.request_started.disconnect(reset_queries)
    if all(cache["BACKEND"] in NOTHING_TO_CLOSE for cache in settings.CACHES.values()):
        signals.request_finished.disconnect(close_caches)
    signals.request_finished.disconnect(reset_urlconf)
