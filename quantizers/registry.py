"""This worker's engine objects, rebuilt whenever the stored state they came from changes.

Maps instance id -> (uid, version, cache_epoch, Quantizer). Each request reads the instance row anyway; when its
uid (re-created instance) or version (config or parameters changed) differs, the engine object is rebuilt from the
row; when only the cache epoch differs (clear_cache through any worker), its cache is dropped. Nothing correct
depends on this cache: a fresh registry gives the same answers.

The worker's registry is reached only through `active()`, never bound at import, so that the tests' simulated
workers swap it in one place (`using`) and no module can keep an old one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import uuid
from collections.abc import Iterator

from engine import ParameterError, QuantizationConfig, Quantizer

from .models import QuantizerInstance
from .stored import stored_parameters

logger = logging.getLogger(__name__)


def build_quantizer(instance: QuantizerInstance) -> Quantizer:
    """A fresh engine object from the stored config and parameters."""
    config = QuantizationConfig.from_dict(instance.config)
    stored = stored_parameters(instance)
    try:
        return Quantizer.restore(config, stored)
    except ParameterError:
        # Stored parameters that no longer fit the config are ignored rather than failing every request.
        logger.warning("stored parameters of %s do not fit its config; ignored", instance.instance_id)
        return Quantizer(config)


@dataclasses.dataclass
class _Entry:
    uid: uuid.UUID
    version: int
    cache_epoch: int
    quantizer: Quantizer


class Registry:
    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()

    def get(self, instance: QuantizerInstance) -> Quantizer:
        """The engine object for this row: the current one, or one rebuilt from the row."""
        quantizer = self.current(instance.instance_id, instance.uid, instance.version, instance.cache_epoch)
        if quantizer is None:
            quantizer = build_quantizer(instance)
            with self._lock:
                self._entries[instance.instance_id] = _Entry(instance.uid, instance.version, instance.cache_epoch,
                                                             quantizer)
        return quantizer

    def current(self, instance_id: str, uid: uuid.UUID, version: int, cache_epoch: int) -> Quantizer | None:
        """The engine object built from the stored state (uid, version) given, its cache dropped when the epoch
        differs, as get() does; None when there is none, so that the caller reads the full row for get()."""
        with self._lock:
            entry = self._entries.get(instance_id)
            if entry is None or entry.uid != uid or entry.version != version:
                return None
            if entry.cache_epoch != cache_epoch:
                entry.quantizer.clear_cache()
                entry.cache_epoch = cache_epoch
            return entry.quantizer

    def known(self, instance_id: str) -> tuple[Quantizer, tuple[uuid.UUID, int, int]] | None:
        """The engine object held for this id and the stored state (uid, version, cache epoch) it was last found
        current for, unchecked: the caller checks that state against the row (hotpath.record_stats)."""
        with self._lock:
            entry = self._entries.get(instance_id)
            return None if entry is None else (entry.quantizer, (entry.uid, entry.version, entry.cache_epoch))

    def forget(self, instance_id: str) -> None:
        with self._lock:
            self._entries.pop(instance_id, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


_active = Registry()


def active() -> Registry:
    """This worker's registry."""
    return _active


@contextlib.contextmanager
def using(registry: Registry) -> Iterator[Registry]:
    """Run with `registry` as this worker's (the tests' simulated workers)."""
    global _active
    previous, _active = _active, registry
    try:
        yield registry
    finally:
        _active = previous
