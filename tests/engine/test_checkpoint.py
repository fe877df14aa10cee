"""Checkpoints from disk: formats accepted and refused, every lie a safetensors header or an .npz can tell refused
from the headers alone, tensors read back equal to what the `safetensors` package and numpy wrote."""

from __future__ import annotations

import io
import json
import os
import pickle
import struct
import zipfile
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np
import pytest
from safetensors.numpy import save_file

from engine import (
    CheckpointError,
    CheckpointTooLarge,
    LimitError,
    QuantizationConfig,
    checkpoint_format,
    inspect_checkpoint,
    quantize_checkpoint,
)
from engine.checkpoint import open_checkpoint


def st_bytes(header: dict[str, Any] | bytes, data: bytes = b"", length: int | None = None) -> bytes:
    """A safetensors file written by hand: 8-byte little-endian header length, the header, the data."""
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(text) if length is None else length) + text + data


def write(tmp_path: Path, name: str, content: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


def assert_refused(path: Path, code: str, tmp_path: Path, *, match: str | None = None) -> None:
    """inspect refuses the file with `code`; a job on it fails the same way and leaves nothing behind."""
    with pytest.raises(CheckpointError, match=match) as info:
        inspect_checkpoint(path)
    assert info.value.code == code, info.value.message
    before = set(os.listdir(tmp_path))
    with pytest.raises(CheckpointError) as job:
        quantize_checkpoint(path, tmp_path / "out.safetensors", QuantizationConfig())
    assert job.value.code == code
    assert set(os.listdir(tmp_path)) == before


# ---------------------------------------------------------------------- formats
@pytest.mark.parametrize("name", ["model.pt", "model.bin", "weights.pkl", "last.ckpt", "model.pth", "MODEL.PT"])
def test_pickle_checkpoints_are_refused_with_convert_to_safetensors(name: str) -> None:
    with pytest.raises(CheckpointError, match="convert to safetensors") as info:
        checkpoint_format(name)
    assert info.value.code == "model.pickle_refused"


@pytest.mark.parametrize("name", ["model.onnx", "model", "model.safetensors.tmp", "model.npy"])
def test_other_suffixes_are_unknown(name: str) -> None:
    with pytest.raises(CheckpointError) as info:
        checkpoint_format(name)
    assert info.value.code == "model.format_unknown"


def test_formats_by_suffix() -> None:
    assert checkpoint_format("a/b/Model.SafeTensors") == "safetensors"
    assert checkpoint_format("weights.npz") == "npz"


def test_a_pickle_file_is_refused_before_it_is_opened(tmp_path: Path) -> None:
    sentinel = tmp_path / "unpickled"
    path = write(tmp_path, "model.pt", pickle.dumps(_Boom(str(sentinel))))
    with pytest.raises(CheckpointError, match="convert to safetensors"):
        quantize_checkpoint(path, tmp_path / "out.pt", QuantizationConfig())
    assert not sentinel.exists()


class _Boom:
    """Unpickling this creates a directory: proof that nothing was unpickled when it does not exist."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.mkdir, (self.path,))


# ---------------------------------------------------------------------- safetensors: valid files
def test_reads_what_the_safetensors_package_wrote(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    tensors = {
        "w": rng.standard_normal((5, 3)).astype(np.float32),
        "d": rng.standard_normal(4),
        "h": rng.standard_normal((2, 2)).astype(np.float16),
        "b": rng.standard_normal((3, 2)).astype(np.float32).astype(ml_dtypes.bfloat16),
        "i": np.arange(7, dtype=np.int64),
        "u": np.arange(3, dtype=np.uint8),
        "f": np.array([True, False, True]),
        "s": np.array(2.5, dtype=np.float32),
        "e": np.zeros((0, 4), np.float32),
    }
    path = tmp_path / "m.safetensors"
    save_file(tensors, path, metadata={"format": "pt"})
    info = inspect_checkpoint(path)
    by_name = {t.name: t for t in info.tensors}
    assert set(by_name) == set(tensors)
    assert {n: t.dtype for n, t in by_name.items()} == {"w": "F32", "d": "F64", "h": "F16", "b": "BF16", "i": "I64",
                                                        "u": "U8", "f": "BOOL", "s": "F32", "e": "F32"}
    assert {n: t.shape for n, t in by_name.items()} == {n: a.shape for n, a in tensors.items()}
    assert info.total_bytes == sum(a.nbytes for a in tensors.values())
    with open_checkpoint(path) as reader:
        assert reader.metadata == {"format": "pt"}
        for name, expected in tensors.items():
            with reader.tensor(name) as got:
                assert got.dtype == expected.dtype
                assert got.tobytes() == expected.tobytes()
                assert not got.flags.writeable
        with reader.float32("b") as as_f32:
            assert np.array_equal(as_f32, tensors["b"].astype(np.float32))


def test_a_large_tensor_converts_in_blocks(tmp_path: Path) -> None:
    """bfloat16 beyond one conversion block: the float32 view equals ml_dtypes' own cast."""
    x = np.random.default_rng(1).standard_normal((1500, 1100)).astype(ml_dtypes.bfloat16)
    path = tmp_path / "m.safetensors"
    save_file({"x": x}, path)
    with open_checkpoint(path) as reader, reader.float32("x") as got:
        assert got.dtype == np.float32
        assert np.array_equal(got, x.astype(np.float32))


# ---------------------------------------------------------------------- safetensors: lies and damage
F32_2x2 = {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}


def test_header_length_beyond_the_file(tmp_path: Path) -> None:
    assert_refused(write(tmp_path, "m.safetensors", st_bytes(b'{"a":1}', length=4096)), "model.truncated", tmp_path)


def test_header_above_the_100_mb_cap_is_refused_without_reading_it(tmp_path: Path) -> None:
    path = write(tmp_path, "m.safetensors", st_bytes(b"{}", length=100_000_001))
    assert_refused(path, "model.header_invalid", tmp_path, match="cap")


def test_a_file_too_short_for_the_length(tmp_path: Path) -> None:
    assert_refused(write(tmp_path, "m.safetensors", b"\x10\x00"), "model.truncated", tmp_path)


def test_duplicate_names_are_refused(tmp_path: Path) -> None:
    text = b'{"w":' + json.dumps(F32_2x2).encode() + b',"w":' + json.dumps(F32_2x2).encode() + b"}"
    assert_refused(write(tmp_path, "m.safetensors", st_bytes(text, bytes(16))), "model.header_invalid", tmp_path,
                   match="twice")


@pytest.mark.parametrize("text", [b"not json", b"[1, 2]", b'{"w": 1}', b'{"w": {"dtype": "F32"}}', b"\xff\xfe{}",
                                  b'{"__metadata__": {"a": 1}}'])
def test_malformed_headers(tmp_path: Path, text: bytes) -> None:
    assert_refused(write(tmp_path, "m.safetensors", st_bytes(text)), "model.header_invalid", tmp_path)


def test_offsets_out_of_bounds(tmp_path: Path) -> None:
    header = {"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [16, 32]},
              "v": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}
    assert_refused(write(tmp_path, "m.safetensors", st_bytes(header, bytes(16))), "model.truncated", tmp_path)


def test_overlapping_tensors(tmp_path: Path) -> None:
    header = {"w": F32_2x2, "v": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}
    assert_refused(write(tmp_path, "m.safetensors", st_bytes(header, bytes(16))), "model.header_invalid", tmp_path,
                   match="overlaps")


def test_a_hole_between_tensors(tmp_path: Path) -> None:
    header = {"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
              "v": {"dtype": "F32", "shape": [2], "data_offsets": [12, 20]}}
    assert_refused(write(tmp_path, "m.safetensors", st_bytes(header, bytes(20))), "model.header_invalid", tmp_path,
                   match="hole")


def test_bytes_after_the_last_tensor(tmp_path: Path) -> None:
    assert_refused(write(tmp_path, "m.safetensors", st_bytes({"w": F32_2x2}, bytes(20))), "model.header_invalid",
                   tmp_path, match="cover")


def test_dtype_times_shape_must_equal_the_span(tmp_path: Path) -> None:
    header = {"w": {"dtype": "F32", "shape": [3, 2], "data_offsets": [0, 16]}}
    assert_refused(write(tmp_path, "m.safetensors", st_bytes(header, bytes(16))), "model.header_invalid", tmp_path,
                   match="24 bytes")


@pytest.mark.parametrize("shape", [[-1, 4], [2.0, 2], [True, 4], "22", [2] * 17])
def test_shapes_must_be_non_negative_integers(tmp_path: Path, shape: Any) -> None:
    header = {"w": {"dtype": "F32", "shape": shape, "data_offsets": [0, 16]}}
    assert_refused(write(tmp_path, "m.safetensors", st_bytes(header, bytes(16))), "model.header_invalid", tmp_path)


@pytest.mark.parametrize("dtype", ["F4", "C64", "float32", "Q8", 5])
def test_unknown_dtypes(tmp_path: Path, dtype: Any) -> None:
    header = {"w": {"dtype": dtype, "shape": [4], "data_offsets": [0, 16]}}
    assert_refused(write(tmp_path, "m.safetensors", st_bytes(header, bytes(16))), "model.dtype_unknown", tmp_path)


def test_a_truncated_file(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    save_file({"a": np.ones((8, 8), np.float32), "b": np.ones(8, np.float32)}, path)
    content = path.read_bytes()
    path.write_bytes(content[:-5])
    assert_refused(path, "model.truncated", tmp_path)


def test_element_limit_is_a_limit_error(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    save_file({"a": np.ones((8, 8), np.float32)}, path)
    with pytest.raises(CheckpointTooLarge) as info:
        inspect_checkpoint(path, max_tensor_elements=63)
    assert isinstance(info.value, LimitError)
    assert info.value.code == "model.too_large"
    assert inspect_checkpoint(path, max_tensor_elements=64).total_bytes == 256


# ---------------------------------------------------------------------- npz
def npz_with(tmp_path: Path, members: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> Path:
    path = tmp_path / "m.npz"
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        for name, content in members.items():
            zf.writestr(name, content)
    return path


def npy(arr: np.ndarray[Any, Any]) -> bytes:
    out = io.BytesIO()
    np.save(out, arr, allow_pickle=arr.dtype.kind == "O")
    return out.getvalue()


def test_reads_what_numpy_wrote_stored_and_compressed(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    tensors = {"w": rng.standard_normal((6, 5)).astype(np.float32), "i": np.arange(4, dtype=np.int32),
               "f": np.array([True, False]), "s": np.float64(1.5), "be": np.arange(3, dtype=">f4"),
               "fo": np.asfortranarray(rng.standard_normal((3, 4)))}
    for save in (np.savez, np.savez_compressed):
        path = tmp_path / "m.npz"
        save(path, **tensors)  # type: ignore[operator]
        info = inspect_checkpoint(path)
        assert {t.name: t.shape for t in info.tensors} == {n: np.shape(a) for n, a in tensors.items()}
        with open_checkpoint(path) as reader:
            for name, expected in tensors.items():
                with reader.tensor(name) as got:
                    assert got.dtype == np.asarray(expected).dtype
                    assert np.array_equal(got, expected)


def test_npz_members_must_be_npy(tmp_path: Path) -> None:
    path = npz_with(tmp_path, {"w.npy": npy(np.ones(3, np.float32)), "notes.txt": b"hello"})
    assert_refused(path, "model.npz_member", tmp_path, match="notes.txt")


def test_npz_object_arrays_are_refused_never_unpickled(tmp_path: Path) -> None:
    sentinel = tmp_path / "unpickled"
    arr = np.empty(1, dtype=object)
    arr[0] = _Boom(str(sentinel))
    path = npz_with(tmp_path, {"w.npy": npy(arr)})
    assert_refused(path, "model.npz_member", tmp_path, match="object")
    assert not sentinel.exists()


def test_npz_member_whose_header_lies_about_its_size(tmp_path: Path) -> None:
    content = npy(np.ones(4, np.float32))
    lying = content.replace(b"(4,)", b"(9,)")
    assert_refused(npz_with(tmp_path, {"w.npy": lying}), "model.npz_member", tmp_path, match="declares")


def test_npz_bomb_is_refused_before_decompressing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """64 MiB of zeros deflate to ~64 KiB: the limit on the declared size refuses it after reading only the
    .npy header (a few hundred bytes inflated)."""
    path = npz_with(tmp_path, {"w.npy": npy(np.zeros(16 << 20, np.float32))}, zipfile.ZIP_DEFLATED)
    assert path.stat().st_size < 1 << 20
    inflated = []
    original = zipfile.ZipExtFile.read

    def counting_read(self: zipfile.ZipExtFile, n: int = -1) -> bytes:
        out = original(self, n)
        inflated.append(len(out))
        return out

    monkeypatch.setattr(zipfile.ZipExtFile, "read", counting_read)
    with pytest.raises(CheckpointTooLarge):
        inspect_checkpoint(path, max_total_bytes=32 << 20)
    assert 0 < sum(inflated) < 4096
    with pytest.raises(CheckpointTooLarge):
        inspect_checkpoint(path, max_tensor_elements=1 << 20)


def test_npz_duplicate_members(tmp_path: Path) -> None:
    path = tmp_path / "m.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("w.npy", npy(np.ones(2, np.float32)))
        with pytest.warns(UserWarning, match="Duplicate"):
            zf.writestr("w.npy", npy(np.ones(3, np.float32)))
    assert_refused(path, "model.npz_member", tmp_path, match="twice")


def test_not_a_zip(tmp_path: Path) -> None:
    assert_refused(write(tmp_path, "m.npz", b"PK\x03\x04 not really"), "model.header_invalid", tmp_path)
