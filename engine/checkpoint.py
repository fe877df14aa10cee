"""Model checkpoints on disk: which formats are accepted, their validation from the headers alone, tensors read one
at a time through a memory map, and the writers of a job's output.

Formats: `.safetensors` (engine/safetensors.py) and `.npz` (a zip of `.npy` members). Pickle-based checkpoints
(`.pt`, `.bin`, `.pkl`, `.ckpt`, `.pth`) are refused by name: loading them runs whatever code they carry.

Memory: a tensor is mapped (`mmap`, read-only) only while it is used, and unmapped after, so the pages of a
multi-gigabyte file never accumulate in the process; float16 / bfloat16 / float64 tensors are converted to the
float32 the quantizer takes in row blocks, each block's pages released as soon as it is converted. `.npz`
members stored uncompressed (what `numpy.savez` writes) are mapped in place; compressed ones are decompressed
into one buffer of the declared size, after their headers were checked against the limits (a zip bomb declares
its size, and zipfile never inflates past the declared size).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import io
import math
import mmap
import os
import queue
import struct
import threading
import zipfile
from collections.abc import Iterator
from typing import Any, BinaryIO, Final

import numpy as np
import numpy.typing as npt

from . import safetensors as st
from .errors import CheckpointError, CheckpointTooLarge, NpyFormatError
from .npy import read_npy_header

FORMATS: Final = {".safetensors": "safetensors", ".npz": "npz"}
PICKLE_SUFFIXES: Final = (".pt", ".pth", ".bin", ".pkl", ".pickle", ".ckpt")
MSG_PICKLE = ("{name}: pickle-based checkpoints (.pt, .pth, .bin, .pkl, .ckpt) are refused, since loading one runs "
              "the code it carries: convert to safetensors (e.g. safetensors.torch.save_file(model.state_dict(), "
              "'model.safetensors'))")
MAX_TENSORS: Final = 1_000_000  # names in one checkpoint: real models hold thousands per shard
CONVERT_ROWS_BYTES: Final = 4 << 20  # bytes of float32 converted at a time from float16 / bfloat16 / float64
_PAGE: Final = mmap.ALLOCATIONGRANULARITY
# The page tables filled when the tensor is mapped (the file is in the page cache: it was just uploaded), rather
# than one fault per few pages on first touch inside the kernels, where the faults serialise the threads.
_POPULATE: Final = getattr(mmap, "MAP_POPULATE", 0)
_ZIP_LOCAL_HEADER: Final = struct.Struct("<4s5H3L2H")  # signature ... file name length, extra field length


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    """One tensor as the file declares it: `dtype` is the file's own name ("F32", "BF16", ... for safetensors;
    numpy's, e.g. "float32", for `.npz`)."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    nbytes: int


@dataclasses.dataclass(frozen=True)
class CheckpointInfo:
    format: str
    tensors: tuple[TensorInfo, ...]
    total_bytes: int  # of tensor data


def checkpoint_format(filename: str) -> str:
    """"safetensors" or "npz" from the file name; pickle-based checkpoints are refused with their reason."""
    lower = os.path.basename(filename).lower()
    for suffix, fmt in FORMATS.items():
        if lower.endswith(suffix):
            return fmt
    if lower.endswith(PICKLE_SUFFIXES):
        raise CheckpointError(MSG_PICKLE.format(name=os.path.basename(filename)[:200]), code="model.pickle_refused")
    raise CheckpointError(f"{os.path.basename(filename)[:200]}: a checkpoint must be a .safetensors or .npz file",
                          code="model.format_unknown")


def inspect_checkpoint(path: str | os.PathLike[str], *, fmt: str | None = None, max_tensor_elements: int | None = None,
                       max_total_bytes: int | None = None) -> CheckpointInfo:
    """Validate a checkpoint from its headers alone (no tensor data is read or decompressed) against the format's
    rules and the limits: elements of any one tensor, bytes of all tensors (decompressed). CheckpointError."""
    with open_checkpoint(path, fmt=fmt, max_tensor_elements=max_tensor_elements,
                         max_total_bytes=max_total_bytes) as reader:
        return reader.info


def open_checkpoint(path: str | os.PathLike[str], *, fmt: str | None = None, max_tensor_elements: int | None = None,
                    max_total_bytes: int | None = None) -> CheckpointReader:
    fmt = fmt or checkpoint_format(os.fspath(path))
    if fmt not in FORMATS.values():
        raise CheckpointError(f"unknown checkpoint format {fmt!r}", code="model.format_unknown")
    reader: CheckpointReader = SafetensorsReader(path) if fmt == "safetensors" else NpzReader(path)
    try:
        _check_limits(reader.info, max_tensor_elements, max_total_bytes)
    except BaseException:
        reader.close()
        raise
    return reader


def _check_limits(info: CheckpointInfo, max_tensor_elements: int | None, max_total_bytes: int | None) -> None:
    if max_tensor_elements is not None:
        for t in info.tensors:
            if math.prod(t.shape) > max_tensor_elements:
                raise CheckpointTooLarge(f"tensor {t.name!r} has {math.prod(t.shape)} elements, more than the limit "
                                         f"of {max_tensor_elements}")
    if max_total_bytes is not None and info.total_bytes > max_total_bytes:
        raise CheckpointTooLarge(f"the checkpoint's tensors hold {info.total_bytes} bytes, more than the limit of "
                                 f"{max_total_bytes}")


class CheckpointReader:
    """A validated checkpoint, open; `tensor(name)` maps one tensor at a time."""

    info: CheckpointInfo
    metadata: dict[str, str]

    def __enter__(self) -> CheckpointReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        raise NotImplementedError

    def tensor(self, name: str) -> contextlib.AbstractContextManager[npt.NDArray[Any]]:
        """The tensor's values, read-only, valid inside the `with` block only (its mapping is released after)."""
        raise NotImplementedError

    def float32(self, name: str) -> contextlib.AbstractContextManager[npt.NDArray[np.float32]]:
        """A floating tensor as float32: the mapping itself for F32 data, else a converted copy (row blocks)."""
        return self._float32(name)

    @contextlib.contextmanager
    def _float32(self, name: str) -> Iterator[npt.NDArray[np.float32]]:
        with self.tensor(name) as raw:
            if raw.dtype == np.float32:
                yield raw
                return
            out = np.empty(raw.shape, np.float32)
            flat_in, flat_out = raw.reshape(-1), out.reshape(-1)
            step = max(1, CONVERT_ROWS_BYTES // 4)
            for i in range(0, flat_in.size, step):
                flat_out[i:i + step] = flat_in[i:i + step]
                _release(flat_in[i:i + step])
            del flat_in, raw
            yield out


def _release(view: npt.NDArray[Any]) -> None:
    """Drop the resident pages of a mapped, converted block (what ru_maxrss would otherwise count until the
    tensor is unmapped). A hint: nothing breaks where it is not available."""
    base = view.base
    while base is not None and not isinstance(base, mmap.mmap):
        base = getattr(base, "base", None) if not isinstance(base, memoryview) else base.obj
    if not isinstance(base, mmap.mmap) or not hasattr(base, "madvise") or view.nbytes < 2 * _PAGE:
        return
    start_addr = view.__array_interface__["data"][0]
    base_addr = np.frombuffer(base, np.uint8, count=1).__array_interface__["data"][0]
    offset = start_addr - base_addr
    first = -(-offset // mmap.PAGESIZE) * mmap.PAGESIZE
    last = (offset + view.nbytes) // mmap.PAGESIZE * mmap.PAGESIZE
    if last > first:
        with contextlib.suppress(OSError, ValueError):
            base.madvise(mmap.MADV_DONTNEED, first, last - first)


@contextlib.contextmanager
def _mapped(file: BinaryIO, offset: int, nbytes: int, dtype: np.dtype[Any], shape: tuple[int, ...],
            order: str = "C") -> Iterator[npt.NDArray[Any]]:
    """A read-only array over bytes [offset, offset + nbytes) of an open file, unmapped when the block ends."""
    if nbytes == 0:
        empty = np.empty(shape, dtype, order=order)  # type: ignore[call-overload]
        empty.flags.writeable = False
        yield empty
        return
    start = offset // _PAGE * _PAGE
    mm = mmap.mmap(file.fileno(), offset - start + nbytes, flags=mmap.MAP_SHARED | _POPULATE, prot=mmap.PROT_READ,
                   offset=start)
    try:
        arr = np.frombuffer(mm, dtype=dtype, count=math.prod(shape), offset=offset - start)
        yield arr.reshape(shape, order=order)  # type: ignore[call-overload]
        del arr
    finally:
        with contextlib.suppress(BufferError):  # a view escaped the block: the mapping goes when the view does
            mm.close()


# ---------------------------------------------------------------------- safetensors
class SafetensorsReader(CheckpointReader):
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._file: BinaryIO = open(path, "rb")  # noqa: SIM115 - closed by close()
        try:
            size = os.fstat(self._file.fileno()).st_size
            header = st.parse_header(self._file.read(8), size, self._file.read)
            if len(header.entries) > MAX_TENSORS:
                raise CheckpointError(f"the checkpoint names {len(header.entries)} tensors, more than "
                                      f"{MAX_TENSORS}", code="model.header_invalid")
        except BaseException:
            self._file.close()
            raise
        self._header = header
        self._entries = {e.name: e for e in header.entries}
        self.metadata = header.metadata
        self.info = CheckpointInfo("safetensors", tuple(TensorInfo(e.name, e.dtype, e.shape, e.nbytes)
                                                        for e in header.entries),
                                   sum(e.nbytes for e in header.entries))

    def close(self) -> None:
        self._file.close()

    def tensor(self, name: str) -> contextlib.AbstractContextManager[npt.NDArray[Any]]:
        e = self._entries[name]
        return _mapped(self._file, self._header.data_start + e.begin, e.nbytes, st.DTYPES[e.dtype], e.shape)


# ---------------------------------------------------------------------- npz
@dataclasses.dataclass(frozen=True)
class _Member:
    info: zipfile.ZipInfo
    dtype: np.dtype[Any]
    shape: tuple[int, ...]
    fortran_order: bool
    data_offset: int  # within the member's decompressed bytes

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


class NpzReader(CheckpointReader):
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._file: BinaryIO = open(path, "rb")  # noqa: SIM115 - closed by close()
        try:
            self._zip = zipfile.ZipFile(self._file)
            self._members = self._read_members()
        except zipfile.BadZipFile as exc:
            self._file.close()
            raise CheckpointError(f"not a valid .npz (zip) file: {exc}", code="model.header_invalid") from None
        except BaseException:
            self._file.close()
            raise
        self.metadata = {}
        self.info = CheckpointInfo("npz", tuple(TensorInfo(name, m.dtype.name, m.shape, m.nbytes)
                                                for name, m in self._members.items()),
                                   sum(m.nbytes for m in self._members.values()))

    def _read_members(self) -> dict[str, _Member]:
        infos = self._zip.infolist()
        if len(infos) > MAX_TENSORS:
            raise CheckpointError(f"the .npz holds {len(infos)} members, more than {MAX_TENSORS}",
                                  code="model.npz_member")
        members: dict[str, _Member] = {}
        for info in infos:
            where = f".npz member {info.filename[:200]!r}"
            if info.is_dir() or not info.filename.endswith(".npy"):
                raise CheckpointError(f"{where} is not a .npy array: an .npz checkpoint holds only .npy members",
                                      code="model.npz_member")
            name = info.filename[: -len(".npy")]
            if name in members:
                raise CheckpointError(f"{where} appears twice", code="model.npz_member")
            if info.flag_bits & 0x1:
                raise CheckpointError(f"{where} is encrypted", code="model.npz_member")
            try:
                with self._zip.open(info) as stream:
                    header = read_npy_header(stream.read)
            except NpyFormatError as exc:
                raise CheckpointError(f"{where}: {exc.message}", code="model.npz_member") from None
            except (zipfile.BadZipFile, NotImplementedError, EOFError, OSError) as exc:
                raise CheckpointError(f"{where} cannot be read: {exc}", code="model.npz_member") from None
            declared = header.data_offset + header.nbytes
            if declared != info.file_size:
                raise CheckpointError(f"{where}: its .npy header declares {declared} bytes but the zip entry "
                                      f"{info.file_size}", code="model.npz_member")
            members[name] = _Member(info, header.dtype, header.shape, header.fortran_order, header.data_offset)
        return members

    def close(self) -> None:
        self._zip.close()
        self._file.close()

    @contextlib.contextmanager
    def tensor(self, name: str) -> Iterator[npt.NDArray[Any]]:
        m = self._members[name]
        order = "F" if m.fortran_order else "C"
        if m.info.compress_type == zipfile.ZIP_STORED:
            with _mapped(self._file, self._stored_offset(m.info) + m.data_offset, m.nbytes, m.dtype, m.shape,
                         order) as arr:
                yield arr
            return
        buf = np.empty(m.nbytes, np.uint8)
        with self._zip.open(m.info) as stream:
            stream.read(m.data_offset)
            view = memoryview(buf.data)
            got = 0
            while got < m.nbytes:
                n = stream.readinto(view[got:])  # type: ignore[attr-defined]
                if not n:
                    raise CheckpointError(f".npz member {m.info.filename!r} is truncated", code="model.truncated")
                got += n
        yield buf.view(m.dtype).reshape(m.shape, order=order)  # type: ignore[call-overload]

    def _stored_offset(self, info: zipfile.ZipInfo) -> int:
        """Where an uncompressed member's bytes start in the file: after its local header."""
        self._file.seek(info.header_offset)
        local = self._file.read(_ZIP_LOCAL_HEADER.size)
        if len(local) != _ZIP_LOCAL_HEADER.size or local[:4] != b"PK\x03\x04":
            raise CheckpointError(f".npz member {info.filename!r}: bad local header", code="model.npz_member")
        fields = _ZIP_LOCAL_HEADER.unpack(local)
        start = info.header_offset + _ZIP_LOCAL_HEADER.size + fields[-2] + fields[-1]
        if start + info.file_size > os.fstat(self._file.fileno()).st_size:
            raise CheckpointError(f".npz member {info.filename!r} is truncated", code="model.truncated")
        return int(start)


# ---------------------------------------------------------------------- writers
def reserve(file: BinaryIO | BackgroundFile, nbytes: int) -> None:
    """Allocate an output's blocks before it is written (posix_fallocate). Measured on ext4, 64 writes of 4 MiB:
    0.04 s of CPU into reserved blocks, 0.06-0.29 s growing the file write by write (delayed allocation); and a
    disk too small for the output refuses the job before any work. Where the file system cannot, a no-op."""
    try:
        os.posix_fallocate(file.fileno(), 0, nbytes)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise CheckpointError(f"the output needs {nbytes} bytes and its disk has less free space",
                                  code="model.no_space") from None
    except (AttributeError, io.UnsupportedOperation):  # no fallocate, or not a real file (a test's buffer)
        pass


class BackgroundFile:
    """Sequential writes handed to a thread, so that the next tensor is computed while the last one is written
    (file writes release the GIL; on a busy disk a write can take longer than the quantization). At most
    `depth` writes wait, each holding its array; the first error is raised by the next `write` or by `finish`."""

    def __init__(self, file: BinaryIO, depth: int = 1) -> None:
        self._file = file
        self._queue: queue.Queue[memoryview | None] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._drain, name="checkpoint-writer", daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        while (item := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._file.write(item)
                except BaseException as exc:  # handed to the job's thread
                    self._error = exc

    def write(self, data: memoryview | bytes) -> int:
        if self._error is not None:
            raise self._error
        view = memoryview(data)
        self._queue.put(view)
        return view.nbytes

    def fileno(self) -> int:
        return self._file.fileno()

    def finish(self) -> None:
        """Wait for every write; raise the first error."""
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error


class CheckpointWriter:
    """Writes tensors in a fixed order to an open binary file, each as soon as it exists."""

    def write(self, name: str, arr: npt.NDArray[Any]) -> int:
        """Write one tensor (its dtype is the layout's); returns the bytes written."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


def _raw_bytes(arr: npt.NDArray[Any]) -> memoryview:
    return np.ascontiguousarray(arr).reshape(-1).view(np.uint8).data


class SafetensorsWriter(CheckpointWriter):
    """The header first (every output tensor's dtype and shape is known from the plan), then each tensor's bytes
    in the layout's order; `write` checks each against the layout, `close` that nothing is missing."""

    def __init__(self, file: BinaryIO | BackgroundFile, layout: list[tuple[str, str, tuple[int, ...]]],
                 metadata: dict[str, str]) -> None:
        self._file = file
        self._layout = layout
        self._next = 0
        header = st.encode_header(layout, metadata)
        reserve(file, len(header) + sum(math.prod(shape) * st.DTYPES[dtype].itemsize for _, dtype, shape in layout))
        file.write(header)

    def write(self, name: str, arr: npt.NDArray[Any]) -> int:
        expected = self._layout[self._next]
        got = (name, st.dtype_name(arr.dtype), tuple(arr.shape))
        if got != expected:
            raise RuntimeError(f"output tensor {got} does not match the planned {expected}")
        self._next += 1
        self._file.write(_raw_bytes(arr))
        return arr.nbytes

    def close(self) -> None:
        if self._next != len(self._layout):
            raise RuntimeError(f"{len(self._layout) - self._next} planned output tensors were not written")


# numpy has no bfloat16 or float8 dtype an .npy reader knows: their bit patterns, as the API's .npz answers carry.
NPZ_BITS: Final[dict[str, np.dtype[Any]]] = {
    "BF16": np.dtype("<u2"), "F8_E4M3": np.dtype("u1"), "F8_E5M2": np.dtype("u1")}


class NpzWriter(CheckpointWriter):
    """An uncompressed `.npz` (as numpy.savez writes), one `.npy` member per tensor, with fixed timestamps so that
    the same tensors give the same bytes."""

    def __init__(self, file: BinaryIO) -> None:
        self._zip = zipfile.ZipFile(file, "w", compression=zipfile.ZIP_STORED, allowZip64=True)

    def write(self, name: str, arr: npt.NDArray[Any]) -> int:
        if arr.dtype.kind == "V":
            arr = arr.view(NPZ_BITS[st.dtype_name(arr.dtype)])
        info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_STORED
        info.external_attr = 0o644 << 16
        with self._zip.open(info, "w", force_zip64=arr.nbytes > (1 << 30)) as member:
            np.lib.format.write_array(member, arr, version=(1, 0) if arr.nbytes < (1 << 31) else (2, 0),
                                      allow_pickle=False)
        return arr.nbytes

    def close(self) -> None:
        self._zip.close()


def writer_for(fmt: str, file: BinaryIO | BackgroundFile, layout: list[tuple[str, str, tuple[int, ...]]],
               metadata: dict[str, str]) -> CheckpointWriter:
    if fmt == "safetensors":
        return SafetensorsWriter(file, layout, metadata)
    assert not isinstance(file, BackgroundFile)  # zipfile seeks back to complete each member's header
    return NpzWriter(file)


def numpy_dtype(fmt: str, dtype: str) -> np.dtype[Any]:
    """A TensorInfo dtype name as a numpy dtype."""
    return st.DTYPES[dtype] if fmt == "safetensors" else np.dtype(dtype)

