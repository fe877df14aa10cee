"""Model jobs: a checkpoint written by the `safetensors` package (or numpy) through quantize_checkpoint, the
output read back by the `safetensors` package, codes compared with the engine's Quantizer on the same tensor and
with numpy written here, report figures recomputed here."""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import struct
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

from engine import (
    REPORT_FIELDS,
    CheckpointError,
    InputError,
    JobCancelled,
    LayerReport,
    QuantizationConfig,
    Quantizer,
    quantize_checkpoint,
    summarize,
)

F32 = np.float32


def config(**fields: Any) -> QuantizationConfig:
    return QuantizationConfig.from_dict(fields)


def model(rng: np.random.Generator) -> dict[str, np.ndarray[Any, Any]]:
    return {
        "layers.0.attn.weight": rng.standard_normal((48, 32)).astype(F32),
        "layers.0.attn.bias": rng.standard_normal(48).astype(F32),
        "layers.0.norm.weight": (1 + 0.1 * rng.standard_normal(32)).astype(F32),
        "layers.1.mlp.weight": (0.02 * rng.standard_normal((16, 48))).astype(np.float16),
        "layers.1.conv.weight": rng.standard_normal((8, 3, 3, 3)),
        "position_ids": np.arange(12, dtype=np.int64),
        "mask": np.array([True, False, True]),
        "step": np.array(3.0, F32),
    }


def run(tmp_path: Path, tensors: dict[str, Any], cfg: QuantizationConfig, **kwargs: Any
        ) -> tuple[list[LayerReport], Path]:
    src, dst = tmp_path / "in.safetensors", tmp_path / "out.safetensors"
    save_file(tensors, src, metadata={"format": "pt"})
    return quantize_checkpoint(src, dst, cfg, **kwargs), dst


def raw_tensor(path: Path, name: str) -> tuple[str, list[int], bytes]:
    """A tensor's dtype, shape and bytes, read with json and struct alone (for the dtypes numpy lacks)."""
    content = path.read_bytes()
    (n,) = struct.unpack("<Q", content[:8])
    entry = json.loads(content[8:8 + n])[name]
    begin, end = entry["data_offsets"]
    return entry["dtype"], entry["shape"], content[8 + n + begin:8 + n + end]


def numpy_int8_per_channel(x: np.ndarray[Any, Any]) -> tuple[Any, Any, Any]:
    """ONNX's DynamicQuantizeLinear arithmetic for int8, one range per row, written out in numpy (float32)."""
    lo = np.minimum(x.min(axis=1), F32(0)).astype(F32)
    hi = np.maximum(x.max(axis=1), F32(0)).astype(F32)
    scale = ((hi - lo) / F32(255)).astype(F32)
    zp = np.clip(np.rint(F32(-128) - lo / scale), -128, 127)
    q = np.clip(np.rint(x / scale[:, None]).astype(F32) + zp[:, None].astype(F32), -128, 127).astype(np.int8)
    return q, scale, zp.astype(np.int8)


# ---------------------------------------------------------------------- codes
def test_per_channel_int8_codes_match_numpy_and_the_quantizer(tmp_path: Path, rng: np.random.Generator) -> None:
    tensors = model(rng)
    reports, dst = run(tmp_path, tensors, config(per_channel=True))
    out = load_file(dst)
    x = tensors["layers.0.attn.weight"]
    q, scale, zp = numpy_int8_per_channel(x)
    assert out["layers.0.attn.weight"].dtype == np.int8
    assert np.array_equal(out["layers.0.attn.weight"], q)
    assert out["layers.0.attn.weight_scale"].dtype == F32
    assert out["layers.0.attn.weight_scale"].shape == (48, 1)  # as compressed-tensors shapes a channel scale
    assert np.array_equal(out["layers.0.attn.weight_scale"][:, 0], scale)
    assert np.array_equal(out["layers.0.attn.weight_zero_point"], zp[:, None])
    engine = Quantizer(config(per_channel=True)).quantize(x, channel_dim=0)
    assert np.array_equal(out["layers.0.attn.weight"], engine.data)
    row = next(r for r in reports if r.name == "layers.0.attn.weight")
    assert (row.scheme, row.channel_dim, row.quantization_type) == ("per_channel", 0, "INT8")
    assert row.params is not None
    assert row.params["channel_dim"] == 0
    assert np.array_equal(np.asarray(row.params["scale"], F32), scale)
    assert row.params["zero_point"] == zp.astype(int).tolist()


def test_every_floating_tensor_is_quantized_as_the_quantizer_would(tmp_path: Path, rng: np.random.Generator) -> None:
    tensors = model(rng)
    cfg = config(per_channel=True)
    reports, dst = run(tmp_path, tensors, cfg)
    out = load_file(dst)
    for name in ("layers.0.attn.bias", "layers.0.norm.weight", "layers.1.mlp.weight", "layers.1.conv.weight"):
        x = np.asarray(tensors[name], F32)
        # 1-D tensors per tensor; others per channel along axis 0
        one_d = x.ndim == 1
        engine = Quantizer(config() if one_d else cfg).quantize(x, channel_dim=None if one_d else 0)
        assert np.array_equal(out[name], engine.data), name
        expected_scale = engine.params.scale.reshape((1,) if one_d else (-1,) + (1,) * (x.ndim - 1))
        assert np.array_equal(out[f"{name}_scale"], expected_scale), name
        row = next(r for r in reports if r.name == name)
        assert row.scheme == ("per_tensor" if one_d else "per_channel")


def test_channel_dim_moves_the_channels(tmp_path: Path, rng: np.random.Generator) -> None:
    x = rng.standard_normal((6, 10)).astype(F32)
    reports, dst = run(tmp_path, {"w": x}, config(per_channel=True), channel_dim=1)
    out = load_file(dst)
    engine = Quantizer(config(per_channel=True)).quantize(x, channel_dim=1)
    assert np.array_equal(out["w"], engine.data)
    assert out["w_scale"].shape == (1, 10)
    assert reports[0].channel_dim == 1


@pytest.mark.parametrize(("fields", "codes_dtype", "zero_point"), [
    ({"quantization_type": "UINT8"}, np.uint8, True),
    ({"quantization_type": "INT8", "symmetric": True}, np.int8, False),
    ({"quantization_type": "UINT8", "symmetric": True}, np.uint8, True),
    ({"quantization_type": "INT16", "per_channel": True}, np.int16, True),
    ({"quantization_type": "INT4", "symmetric": True, "per_channel": True}, np.int8, False),
    ({"quantization_type": "UINT4"}, np.uint8, True),
    ({"quantization_mode": "SYMMETRIC"}, np.int8, False),
    ({"quantization_mode": "DYNAMIC_PER_CHANNEL"}, np.int8, True),
    ({"qparams_rule": "torch", "per_channel": True}, np.int8, True),
])
def test_integer_types(tmp_path: Path, rng: np.random.Generator, fields: dict[str, Any], codes_dtype: Any,
                       zero_point: bool) -> None:
    x = rng.standard_normal((12, 20)).astype(F32)
    cfg = config(**fields)
    reports, dst = run(tmp_path, {"w": x}, cfg)
    out = load_file(dst)
    per_channel = fields.get("per_channel") or fields.get("quantization_mode") == "DYNAMIC_PER_CHANNEL"
    engine = Quantizer(cfg).quantize(x, channel_dim=0 if per_channel else None)
    assert out["w"].dtype == codes_dtype
    assert np.array_equal(out["w"], engine.data)
    assert np.array_equal(out["w_scale"].reshape(-1), engine.params.scale.reshape(-1))
    assert ("w_zero_point" in out) == zero_point
    if zero_point:
        assert out["w_zero_point"].dtype == codes_dtype
        assert np.array_equal(out["w_zero_point"].reshape(-1), engine.params.zero_point.reshape(-1))
    else:
        assert not np.any(engine.params.zero_point)
    assert reports[0].quantization_type == cfg.quantization_type.name


@pytest.mark.parametrize(("qtype", "st_dtype", "ml_dtype"), [("FP8_E4M3", "F8_E4M3", ml_dtypes.float8_e4m3fn),
                                                             ("FP8_E5M2", "F8_E5M2", ml_dtypes.float8_e5m2)])
def test_fp8(tmp_path: Path, rng: np.random.Generator, qtype: str, st_dtype: str, ml_dtype: Any) -> None:
    x = rng.standard_normal((8, 16)).astype(F32)
    cfg = config(quantization_type=qtype, per_channel=True)
    _, dst = run(tmp_path, {"w": x}, cfg)
    engine = Quantizer(cfg).quantize(x, channel_dim=0)
    dtype, shape, raw = raw_tensor(dst, "w")
    assert (dtype, shape) == (st_dtype, [8, 16])
    assert np.array_equal(np.frombuffer(raw, ml_dtype).astype(F32).reshape(8, 16), engine.data)
    with safe_open(dst, "numpy") as f:  # the package's numpy loader has no float8: the scale alone
        assert sorted(f.keys()) == ["w", "w_scale"]
        assert np.array_equal(f.get_tensor("w_scale"), engine.params.scale.reshape(8, 1))


def test_float16_and_bfloat16_layers(tmp_path: Path, rng: np.random.Generator) -> None:
    x = rng.standard_normal((4, 8)).astype(F32)
    _, dst = run(tmp_path, {"w": x}, config(quantization_type="FLOAT16"))
    out = load_file(dst)
    assert out["w"].dtype == np.float16
    assert np.array_equal(out["w"], x.astype(np.float16))
    assert set(out) == {"w"}
    _, dst = run(tmp_path, {"w": x}, config(quantization_type="BFLOAT16"))
    dtype, shape, raw = raw_tensor(dst, "w")
    assert (dtype, shape) == ("BF16", [4, 8])
    assert np.frombuffer(raw, ml_dtypes.bfloat16).tobytes() == x.astype(ml_dtypes.bfloat16).tobytes()


def test_bfloat16_input(tmp_path: Path, rng: np.random.Generator) -> None:
    x = rng.standard_normal((16, 24)).astype(ml_dtypes.bfloat16)
    reports, dst = run(tmp_path, {"w": x}, config(per_channel=True))
    engine = Quantizer(config(per_channel=True)).quantize(x.astype(F32), channel_dim=0)
    assert np.array_equal(load_file(dst)["w"], engine.data)
    assert reports[0].dtype == "BF16"
    assert reports[0].bytes_in == x.nbytes


def test_grouped_int4(tmp_path: Path, rng: np.random.Generator) -> None:
    x = rng.standard_normal((6, 40)).astype(F32)
    cfg = config(quantization_type="INT4", symmetric=True, group_size=16)
    reports, dst = run(tmp_path, {"w": x}, cfg)
    out = load_file(dst)
    engine = Quantizer(cfg).quantize(x)
    assert np.array_equal(out["w"], engine.data)
    assert out["w_scale"].shape == (6, 3)  # ONNX's block shape: ceil(40 / 16) blocks per row
    assert np.array_equal(out["w_scale"], engine.params.scale)
    assert (reports[0].scheme, reports[0].channel_dim) == ("per_group", 1)
    assert reports[0].params is None


@pytest.mark.parametrize("method", ["PERCENTILE", "MSE", "ENTROPY"])
def test_calibration_methods_give_each_weight_its_calibrated_range(tmp_path: Path, rng: np.random.Generator,
                                                                   method: str) -> None:
    x = rng.standard_normal((32, 64)).astype(F32)
    x[0, 0] = 40.0  # an outlier the histogram methods clip
    cfg = config(calibration_method=method, per_channel=True)
    reports, dst = run(tmp_path, {"w": x}, cfg)
    reference = Quantizer(cfg)
    reference.calibrate([x], channel_dim=0)
    engine = reference.quantize(x, channel_dim=0)
    out = load_file(dst)
    assert np.array_equal(out["w"], engine.data)
    assert np.array_equal(out["w_scale"].reshape(-1), engine.params.scale)
    # clipped: values whose unclipped code falls outside [-128, 127], counted here in numpy
    scale, zp = out["w_scale"], out["w_zero_point"].astype(F32)
    unclipped = np.rint(x / scale) + zp
    assert reports[0].clipped == int(np.count_nonzero((unclipped < -128) | (unclipped > 127)))
    assert reports[0].clipped == engine.delta.clipped_values


@pytest.mark.parametrize("channel_dim", [0, 1])
def test_per_channel_histograms_go_some_channels_at_a_time_with_the_same_ranges(
        tmp_path: Path, rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch, channel_dim: int) -> None:
    """A weight of more channels than HISTOGRAM_CHANNELS (5 here, 8192 in use) is calibrated in slices of
    channels, and its codes and scales are those of one calibration over the whole weight."""
    import engine.jobs

    monkeypatch.setattr(engine.jobs, "HISTOGRAM_CHANNELS", 5)
    x = rng.standard_normal((23, 17)).astype(F32)
    x[3, 4] = 30.0
    cfg = config(calibration_method="PERCENTILE", per_channel=True)
    _, dst = run(tmp_path, {"w": x}, cfg, channel_dim=channel_dim)
    reference = Quantizer(cfg)
    reference.calibrate([x], channel_dim=channel_dim)
    expected = reference.quantize(x, channel_dim=channel_dim)
    out = load_file(dst)
    assert np.array_equal(out["w"], expected.data)
    assert np.array_equal(out["w_scale"].reshape(-1), expected.params.scale)


# ---------------------------------------------------------------------- what is kept, skipped, planned
def test_kept_and_skipped_tensors_are_byte_identical(tmp_path: Path, rng: np.random.Generator) -> None:
    tensors = model(rng)
    cfg = config(quantize_bias=False, skip_layers=["layers.0.norm.weight"])
    reports, dst = run(tmp_path, tensors, cfg)
    src = tmp_path / "in.safetensors"
    actions = {r.name: r.action for r in reports}
    assert actions == {"layers.0.attn.weight": "quantized", "layers.0.attn.bias": "skipped",
                       "layers.0.norm.weight": "skipped", "layers.1.mlp.weight": "quantized",
                       "layers.1.conv.weight": "quantized", "position_ids": "kept", "mask": "kept", "step": "kept"}
    for name in ("layers.0.attn.bias", "layers.0.norm.weight", "position_ids", "mask", "step"):
        assert raw_tensor(dst, name) == raw_tensor(src, name), name
        assert f"{name}_scale" not in load_file(dst)
    skipped = next(r for r in reports if r.name == "layers.0.attn.bias")
    assert skipped.sqnr_db is None
    assert skipped.bytes_out == skipped.bytes_in == 48 * 4


def test_float8_input_passes_through(tmp_path: Path) -> None:
    x = np.linspace(-2, 2, 16, dtype=F32).astype(ml_dtypes.float8_e4m3fn)
    reports, dst = run(tmp_path, {"w": x}, config())
    assert reports[0].action == "kept"
    assert raw_tensor(dst, "w")[2] == x.tobytes()


def test_mixed_precision_layers(tmp_path: Path, rng: np.random.Generator) -> None:
    tensors = {"a.weight": rng.standard_normal((4, 4)).astype(F32), "b.weight": rng.standard_normal((4, 4)).astype(F32),
               "c.weight": rng.standard_normal((4, 4)).astype(F32)}
    cfg = config(quantization_type="MIXED", mixed_precision_layers=["a.weight"],
                 custom_quantization_config={"b.weight": {"quantization_type": "UINT8"}})
    reports, dst = run(tmp_path, tensors, cfg)
    out = load_file(dst)
    assert out["a.weight"].dtype == np.float16
    assert out["b.weight"].dtype == np.uint8
    assert out["c.weight"].dtype == np.int8
    assert [r.quantization_type for r in reports] == ["FLOAT16", "UINT8", "INT8"]


def test_every_tensor_appears_once_in_the_report(tmp_path: Path, rng: np.random.Generator) -> None:
    tensors = model(rng)
    seen: list[tuple[str, int]] = []
    reports, _ = run(tmp_path, tensors, config(per_channel=True), on_tensor=lambda r, done: seen.append((r.name, done)))
    assert sorted(r.name for r in reports) == sorted(tensors)
    assert [name for name, _ in seen] == [r.name for r in reports]
    done = [d for _, d in seen]
    assert done == sorted(done)
    assert done[-1] == sum(a.nbytes for a in tensors.values())
    assert all(list(r.to_dict()) == list(REPORT_FIELDS) for r in reports)
    assert all(r.ms > 0 for r in reports)
    json.dumps([r.to_dict() for r in reports])  # plain JSON values


def test_a_tensor_named_like_a_scale_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError) as info:
        run(tmp_path, {"w": np.ones((2, 2), F32), "w_scale": np.ones(1, np.int32)}, config())
    assert info.value.code == "model.name_clash"
    assert not (tmp_path / "out.safetensors").exists()


def test_metadata_names_producer_instance_and_config(tmp_path: Path) -> None:
    cfg = config(per_channel=True, symmetric=True)
    _, dst = run(tmp_path, {"w": np.ones((2, 2), F32)}, cfg, metadata={"instance": "llama-int8"})
    with safe_open(dst, "numpy") as f:
        meta = f.metadata()
    assert meta["producer"] == "quantsite"
    assert meta["instance"] == "llama-int8"
    assert meta["format"] == "pt"  # the input's own metadata is carried over
    assert QuantizationConfig.from_dict(json.loads(meta["quantization_config"])) == cfg


# ---------------------------------------------------------------------- report figures
def test_report_figures_against_numpy(tmp_path: Path, rng: np.random.Generator) -> None:
    x = rng.standard_normal((300, 257)).astype(F32) * np.linspace(0.1, 3, 300, dtype=F32)[:, None]
    reports, dst = run(tmp_path, {"w": x}, config(per_channel=True))
    out = load_file(dst)
    xhat = ((out["w"].astype(F32) - out["w_zero_point"].astype(F32)) * out["w_scale"]).astype(F32)
    x64, e64 = x.astype(np.float64), x.astype(np.float64) - xhat.astype(np.float64)
    row = reports[0]
    assert row.sqnr_db == pytest.approx(10 * math.log10(np.sum(x64**2) / np.sum(e64**2)), abs=1e-4)
    assert row.max_abs_error == float(np.max(np.abs(e64)))
    assert row.rms_error == pytest.approx(float(np.sqrt(np.mean(e64**2))), rel=1e-5)
    assert F32(row.scale_min) == out["w_scale"].min()
    assert F32(row.scale_max) == out["w_scale"].max()
    assert row.clipped == 0
    assert row.values == x.size
    assert row.bytes_in == x.nbytes
    assert row.bytes_out == x.size + 300 * 4 + 300  # codes, F32 scales, I8 zero points
    # the engine's own dequantize of the stored codes gives the same reconstruction
    back = Quantizer(config(per_channel=True)).dequantize(out["w"], scale=out["w_scale"][:, 0].tolist(),
                                                          zero_point=out["w_zero_point"][:, 0].tolist(), channel_dim=0)
    assert np.array_equal(back.data, xhat)


def test_sqnr_is_none_for_exact_and_all_zero_tensors(tmp_path: Path) -> None:
    exact = np.array([[0.5, -1.0], [2.0, 0.25]], F32)  # float16 holds these exactly
    zeros = np.zeros((3, 3), F32)
    reports, _ = run(tmp_path, {"exact": exact, "zeros": zeros}, config(quantization_type="FLOAT16"))
    assert [(r.sqnr_db, r.max_abs_error, r.rms_error) for r in reports] == [(None, 0.0, 0.0)] * 2
    reports, _ = run(tmp_path, {"zeros": zeros}, config())
    assert reports[0].sqnr_db is None


def test_summary(tmp_path: Path, rng: np.random.Generator) -> None:
    tensors = model(rng)
    reports, dst = run(tmp_path, tensors, config(per_channel=True, quantize_bias=False))
    summary = summarize(reports)
    quantized = [r for r in reports if r.action == "quantized"]
    assert summary["tensors_quantized"] == len(quantized) == 4
    assert (summary["tensors_kept"], summary["tensors_skipped"]) == (3, 1)
    assert summary["bytes_in"] == sum(a.nbytes for a in tensors.values())
    assert summary["bytes_out"] == sum(a.nbytes for a in load_file(dst).values())
    assert summary["compression_ratio"] == pytest.approx(summary["bytes_in"] / summary["bytes_out"])
    weighted = sum(r.values * r.sqnr_db for r in quantized) / sum(r.values for r in quantized)
    assert summary["sqnr_db"] == pytest.approx(weighted)
    worst = sorted(quantized, key=lambda r: r.sqnr_db)
    assert [w["name"] for w in summary["worst_layers"]] == [r.name for r in worst]


# ---------------------------------------------------------------------- failure, cancel, determinism
def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_reruns_give_identical_bytes(tmp_path: Path, rng: np.random.Generator) -> None:
    tensors = model(rng)
    _, dst = run(tmp_path, tensors, config(per_channel=True))
    first = sha(dst)
    (tmp_path / "out.safetensors.partial").write_bytes(b"left by a worker that died")
    _, dst = run(tmp_path, tensors, config(per_channel=True))
    assert sha(dst) == first
    assert sorted(os.listdir(tmp_path)) == ["in.safetensors", "out.safetensors"]


def test_cancel_between_tensors_leaves_nothing(tmp_path: Path, rng: np.random.Generator) -> None:
    asked = []

    def cancel() -> bool:
        asked.append(1)
        return len(asked) > 3

    with pytest.raises(JobCancelled) as info:
        run(tmp_path, model(rng), config(), should_cancel=cancel)
    assert info.value.code == "job.cancelled"
    assert len(asked) == 4
    assert os.listdir(tmp_path) == ["in.safetensors"]


def test_a_failing_tensor_leaves_nothing(tmp_path: Path, rng: np.random.Generator) -> None:
    tensors = model(rng)
    tensors["layers.1.mlp.weight"] = tensors["layers.1.mlp.weight"].copy()
    tensors["layers.1.mlp.weight"][0, 0] = np.nan
    with pytest.raises(InputError) as info:
        run(tmp_path, tensors, config())
    assert info.value.code == "input.nan"
    assert os.listdir(tmp_path) == ["in.safetensors"]


def test_the_output_is_reserved_whole_and_a_full_disk_refuses_the_job_before_any_work(
        tmp_path: Path, rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch) -> None:
    """The output's blocks are allocated up front, exactly its final size (a larger reservation would leave
    bytes after the data, which safetensors refuses); where the disk lacks the space, the job stops there with
    model.no_space, before any tensor is read, and leaves nothing."""
    import engine.checkpoint

    reserved: list[int] = []
    real = os.posix_fallocate

    def fallocate(fd: int, offset: int, length: int) -> None:
        reserved.append(length)
        real(fd, offset, length)

    monkeypatch.setattr(engine.checkpoint.os, "posix_fallocate", fallocate)
    _, dst = run(tmp_path, model(rng), config())
    assert reserved == [dst.stat().st_size]
    dst.unlink()

    def full(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    asked = []
    monkeypatch.setattr(engine.checkpoint.os, "posix_fallocate", full)
    with pytest.raises(CheckpointError) as info:
        run(tmp_path, model(rng), config(), should_cancel=lambda: asked.append(1) and False)
    assert info.value.code == "model.no_space"
    assert asked == []  # no tensor was started
    assert os.listdir(tmp_path) == ["in.safetensors"]


def test_nan_allowed_by_the_config_is_left_out_of_the_figures(tmp_path: Path, rng: np.random.Generator) -> None:
    x = rng.standard_normal((4, 8)).astype(F32)
    x[1, 1] = np.nan
    reports, dst = run(tmp_path, {"w": x}, config(error_on_nan=False))
    out = load_file(dst)
    xhat = (out["w"].astype(F32) - out["w_zero_point"].astype(F32)) * out["w_scale"]
    finite = np.isfinite(x)
    e = x[finite].astype(np.float64) - xhat[finite]
    assert reports[0].rms_error == pytest.approx(float(np.sqrt(np.mean(e**2))), rel=1e-5)


def test_npz_in_npz_out(tmp_path: Path, rng: np.random.Generator) -> None:
    tensors = {k: v for k, v in model(rng).items()}
    np.savez(tmp_path / "in.npz", **tensors)
    reports, st_dst = run(tmp_path, tensors, config(per_channel=True))
    npz_reports = quantize_checkpoint(tmp_path / "in.npz", tmp_path / "out.npz", config(per_channel=True))
    with np.load(tmp_path / "out.npz", allow_pickle=False) as got:
        st_out = load_file(st_dst)
        assert set(got.files) == set(st_out)
        for name in st_out:
            assert np.array_equal(got[name], st_out[name]), name
            assert got[name].dtype == st_out[name].dtype
    assert [r.to_dict() | {"ms": 0, "dtype": ""} for r in npz_reports] == \
        [r.to_dict() | {"ms": 0, "dtype": ""} for r in sorted(reports, key=lambda r: list(tensors).index(r.name))]
    first = sha(tmp_path / "out.npz")
    quantize_checkpoint(tmp_path / "in.npz", tmp_path / "out.npz", config(per_channel=True))
    assert sha(tmp_path / "out.npz") == first


def test_channel_dim_out_of_range_is_refused_before_anything_is_written(tmp_path: Path,
                                                                       rng: np.random.Generator) -> None:
    with pytest.raises(InputError) as info:
        run(tmp_path, model(rng), config(per_channel=True), channel_dim=3)  # the 2-D weights have no axis 3
    assert info.value.field == "channel_dim"
    assert os.listdir(tmp_path) == ["in.safetensors"]


def test_npz_carries_bfloat16_and_float8_codes_as_bit_patterns(tmp_path: Path, rng: np.random.Generator) -> None:
    x = rng.standard_normal((4, 6)).astype(F32)
    np.savez(tmp_path / "in.npz", w=x)
    quantize_checkpoint(tmp_path / "in.npz", tmp_path / "bf16.npz", config(quantization_type="BFLOAT16"))
    with np.load(tmp_path / "bf16.npz", allow_pickle=False) as got:
        assert got["w"].dtype == np.uint16
        assert got["w"].tobytes() == x.astype(ml_dtypes.bfloat16).tobytes()
    cfg = config(quantization_type="FP8_E4M3")
    quantize_checkpoint(tmp_path / "in.npz", tmp_path / "fp8.npz", cfg)
    with np.load(tmp_path / "fp8.npz", allow_pickle=False) as got:
        assert got["w"].dtype == np.uint8
        values = got["w"].view(ml_dtypes.float8_e4m3fn).astype(F32)
        assert np.array_equal(values, Quantizer(cfg).quantize(x).data)


def test_job_threads_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.jobs import job_threads

    monkeypatch.delenv("QUANTIZER_JOB_THREADS", raising=False)
    assert job_threads() == (os.cpu_count() or 1)
    monkeypatch.setenv("QUANTIZER_JOB_THREADS", "3")
    assert job_threads() == 3
    for bad in ("0", "-1", "two"):
        monkeypatch.setenv("QUANTIZER_JOB_THREADS", bad)
        with pytest.raises(ValueError, match="QUANTIZER_JOB_THREADS"):
            job_threads()


def test_threads_give_the_same_artifact(tmp_path: Path, rng: np.random.Generator,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A job split over threads writes the same bytes and the same figures as one on a single thread."""
    tensors = {"a.weight": (rng.standard_normal((700, 512)) * 2).astype(np.float32),
               "b.weight": rng.standard_normal((300, 1024)).astype(np.float32)}
    source = tmp_path / "m.safetensors"
    save_file(tensors, str(source))
    config = QuantizationConfig.from_dict({"quantization_type": "INT8", "per_channel": True})
    outputs = []
    for threads in ("1", "3"):
        monkeypatch.setenv("QUANTIZER_JOB_THREADS", threads)
        out = tmp_path / f"out{threads}.safetensors"
        reports = quantize_checkpoint(str(source), str(out), config, metadata={})
        outputs.append((out.read_bytes(), [(r.sqnr_db, r.max_abs_error, r.clipped) for r in reports]))
    assert outputs[0][0] == outputs[1][0]
    for one, three in zip(outputs[0][1], outputs[1][1], strict=True):
        assert one[1:] == three[1:]
        assert one[0] == pytest.approx(three[0], abs=1e-9)
