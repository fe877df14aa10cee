"""numba set-up for the kernels: the on-disk cache folder, the thread count, float32 <-> uint32 bit casts, and the
registry that `warm_kernels` compiles (or loads from the cache) before a worker serves.

Settings (environment, read once at import):
- QUANTIZER_KERNEL_CACHE_DIR: where compiled kernels are cached (numba's NUMBA_CACHE_DIR). Unset: numba's own
  choice, `__pycache__` beside engine/ when writable, else a per-user cache folder (read-only installs work).
The kernels are single-threaded: web workers are the parallelism.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable, Iterable
from typing import Any

_cache_dir = os.environ.get("QUANTIZER_KERNEL_CACHE_DIR")
if _cache_dir and "NUMBA_CACHE_DIR" not in os.environ:
    os.environ["NUMBA_CACHE_DIR"] = _cache_dir  # numba reads it when first imported, just below

import numba  # noqa: E402
from numba import types  # noqa: E402
from numba.core import sigutils  # noqa: E402
from numba.core.caching import FunctionCache  # noqa: E402
from numba.core.runtime import nrt  # noqa: E402
from numba.extending import intrinsic  # noqa: E402

# Every kernel: no fastmath (float32 division stays a division, no reassociation), the GIL released, cached.
OPTIONS: dict[str, Any] = {"cache": True, "nogil": True, "error_model": "numpy"}

_REGISTRY: list[tuple[Any, tuple[str, ...]]] = []


def kernel(*signatures: str) -> Callable[[Callable[..., Any]], Any]:
    """@kernel("sig", ...): a cached njit function whose signatures `warm_kernels` compiles ahead of use. Lazy,
    so that importing the engine (a `manage.py` command) does not pay for it."""

    def wrap(fn: Callable[..., Any]) -> Any:
        # numba's own cache left out (building one probes the cache folder with a file): _LoadingCache instead.
        dispatcher = numba.njit(**{**OPTIONS, "cache": False})(fn)
        dispatcher._cache = _LoadingCache(fn)  # type: ignore[no-untyped-call]
        _REGISTRY.append((dispatcher, tuple(v for sig in signatures for v in _with_read_only_input(sig))))
        return dispatcher

    return wrap


class _LoadingCache(FunctionCache):
    """numba's on-disk cache of a kernel, which loads a signature's machine code without first refreshing the CPU
    target's registries: that refresh imports and installs every lowering numba has (61 modules: its math, numpy,
    random, typed containers ...), which only a compilation uses, and it stayed resident in every web and job
    worker (measured: 9 MB of a process that loads the 66 signatures, 61 -> 52 MB anonymous). A loaded kernel
    needs numba's runtime (NRT) symbols alone, initialized here. A signature the cache lacks is compiled as before,
    and numba's compiler refreshes the registries itself before it compiles."""

    def load_overload(self, sig: Any, target_context: Any) -> Any:
        nrt.rtsys.initialize(target_context)
        with self._guard_against_spurious_io_errors():
            return self._load_overload(sig, target_context)  # type: ignore[no-untyped-call]


def _with_read_only_input(signature: str) -> tuple[Any, ...]:
    """The signature, and the same with its first argument (the input) read-only: an array over a `bytes` request
    body or a read-only file mapping is another numba type, which would otherwise compile at its first use."""
    args, ret = sigutils.normalize_signature(signature)  # type: ignore[no-untyped-call]
    if not isinstance(args[0], types.Array):
        return (signature,)
    return signature, ret(args[0].copy(readonly=True), *args[1:])


def inline(fn: Callable[..., Any]) -> Any:
    """A numba function inlined into the kernels that call it (engine modules get numba from here, so that the
    cache folder is set before numba is first imported)."""
    return numba.njit(inline="always")(fn)


def warm_kernels(only: Iterable[Any] | None = None) -> int:
    """Compile every kernel for every signature the engine calls it with, or load it from the on-disk cache
    (milliseconds each once cached): call before serving (gunicorn's post_fork, the Celery worker's start), so
    that no request pays for a compilation. `only`: these kernels alone (a model job's worker loads the few it
    runs: each loaded signature stays resident, about 0.1 MB). Returns the number of signatures now ready."""
    chosen = None if only is None else {id(dispatcher) for dispatcher in only}
    count = 0
    for dispatcher, signatures in _REGISTRY:
        if chosen is not None and id(dispatcher) not in chosen:
            continue
        for sig in signatures:
            dispatcher.compile(sig)
            count += 1
        _release_linking_ir(dispatcher)
    _trim_heap()
    return count


def _release_linking_ir(dispatcher: Any) -> None:
    """Drop the LLVM IR that each of the kernel's compiled specializations keeps so that other compiled functions
    could link it in. numba parses it back from the cache with every signature it loads, and it stays resident,
    though nothing links a kernel: kernels are called from Python only (a test checks that no compiled function
    calls one). The machine code is kept. Measured: 25 MB of the 44 MB the 66 signatures held."""
    for compiled in dispatcher.overloads.values():
        compiled.library._shared_module = None


def _trim_heap() -> None:
    """Give the C heap's free pages back to the operating system (glibc's malloc_trim; elsewhere nothing): what
    loading the kernels freed (their IR, LLVM's parse) would otherwise stay in this process's resident set, and,
    in a gunicorn master, in every worker it forks."""
    try:
        libc = ctypes.CDLL(None)
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        pass


def fill_kernel_cache(only: Iterable[Any] | None = None) -> bool:
    """Compile what numba's on-disk cache lacks of these kernels (all: None) in a forked child process, and wait for
    it, so that this process, and those it forks later, only load them (`warm_kernels`): compiling leaves LLVM's
    working memory behind in the process that did it (measured on an empty cache: a gunicorn master that compiled
    the kernels itself held 425 MB, and each worker it forked 370 MB). Returns whether the child succeeded; if it
    did not (or there is no fork), the caller's warm_kernels compiles as before."""
    if not hasattr(os, "fork"):
        return False
    pid = os.fork()
    if pid == 0:  # the child: compile, then leave without the parent's exit handlers
        status = 1
        try:
            warm_kernels(only)
            status = 0
        finally:
            os._exit(status)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0


def compiled_signatures() -> int:
    """How many specializations exist now (a test checks that requests after `warm_kernels` add none)."""
    return sum(len(dispatcher.overloads) for dispatcher, _ in _REGISTRY)


def _f32_bits(typingctx: Any, v: Any) -> Any:
    """The bit pattern of a float32 as uint32 (a register move)."""
    if v != types.float32:
        return None

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        return builder.bitcast(args[0], context.get_value_type(types.uint32))

    return types.uint32(types.float32), codegen


def _bits_f32(typingctx: Any, u: Any) -> Any:
    """The float32 whose bit pattern is the low 32 bits of integer `u` (numba widens integer arithmetic)."""
    if not isinstance(u, types.Integer):
        return None

    width: int = u.bitwidth  # type: ignore[attr-defined]  # (numba's stubs lack it)

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        value = args[0]
        if width > 32:
            value = builder.trunc(value, context.get_value_type(types.uint32))
        elif width < 32:
            value = builder.zext(value, context.get_value_type(types.uint32))
        return builder.bitcast(value, context.get_value_type(types.float32))

    return types.float32(u), codegen


f32_bits: Any = intrinsic(_f32_bits)
bits_f32: Any = intrinsic(_bits_f32)
