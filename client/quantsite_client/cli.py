"""The `quantsite` command: `quantsite [--url URL] [--token T] [--json] COMMAND ...`.

Output is a table or a line for people, or JSON with `--json` for scripts. An error is one line on stderr and an
exit code from this table (each exception class carries its own, in errors.py):

    0  success                          5  not found (404)
    1  any other error                  6  conflict (409: exists, not calibrated)
    2  usage error (bad options)        7  invalid input (400, 413, 415 ...)
    3  server unreachable / 5xx         8  model job failed or cancelled
    4  token missing or refused (401/403)   9  evaluate: no candidate meets --target-sqnr
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

try:
    import click
    from rich.console import Console
    from rich.table import Table
except ImportError as exc:  # pragma: no cover - the cli extra is not installed
    raise SystemExit("the quantsite command needs the cli extra: pip install 'quantsite-client[cli]'") from exc

from .arrays import BIT_PATTERN_TYPES
from .client import DEFAULT_URL, QuantsiteClient
from .errors import QuantsiteError

EXIT_TARGET_NOT_MET = 9
F = TypeVar("F", bound=Callable[..., Any])


class Context:
    def __init__(self, url: str, token: str | None, as_json: bool, timeout: float, retries: int) -> None:
        self.url, self.token, self.as_json, self.timeout, self.retries = url, token, as_json, timeout, retries
        # Piped to a file or a script, tables keep their full width rather than rich's default of 80 columns.
        self.out = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
        self.err = Console(stderr=True, highlight=False)

    @contextmanager
    def client(self) -> Iterator[QuantsiteClient]:
        with QuantsiteClient(self.url, token=self.token, timeout=self.timeout, retries=self.retries) as client:
            yield client

    def emit(self, data: Any, human: Callable[[], None] | str | None = None) -> None:
        """JSON of `data` with --json; otherwise `human` (a callable that prints, or a line)."""
        if self.as_json:
            click.echo(json.dumps(_plain(data)))
        elif callable(human):
            human()
        else:
            self.out.print(human if human is not None else json.dumps(_plain(data), indent=2))


pass_ctx = click.make_pass_decorator(Context)


class Group(click.Group):
    """Turns the client's exceptions into one line on stderr and the exit code of their class."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except QuantsiteError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except (OSError, ValueError) as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(1)


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--url", envvar="QUANTSITE_URL", default=DEFAULT_URL, show_default=True,
              help="The server (env QUANTSITE_URL).")
@click.option("--token", envvar="QUANTSITE_TOKEN", default=None, help="API token (env QUANTSITE_TOKEN).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON output.")
@click.option("--timeout", type=float, default=120.0, show_default=True, help="Seconds per request.")
@click.option("--retries", type=click.IntRange(0, 10), default=3, show_default=True,
              help="Retries of reads on 503 / connection errors.")
@click.version_option(package_name="quantsite-client")
@click.pass_context
def cli(ctx: click.Context, url: str, token: str | None, as_json: bool, timeout: float, retries: int) -> None:
    """quantsite: quantize arrays and models on a quantsite server."""
    ctx.obj = Context(url, token, as_json, timeout, retries)


# ---------------------------------------------------------------------------- instances and configuration
@cli.group(invoke_without_command=True)
@click.pass_context
def instances(ctx: click.Context) -> None:
    """List (the default), create or remove instances."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(instances_ls)


@instances.command("ls")
@pass_ctx
def instances_ls(c: Context) -> None:
    """List the instance ids."""
    with c.client() as client:
        ids = client.instances()
    c.emit(ids, "\n".join(ids))


@instances.command("create")
@click.argument("instance_id")
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE", help="A configuration field (repeatable).")
@pass_ctx
def instances_create(c: Context, instance_id: str, settings: Sequence[str]) -> None:
    """Create INSTANCE_ID with these configuration fields (the rest take the defaults)."""
    with c.client() as client:
        message = client.create_instance(instance_id, **_assignments(settings))
    c.emit({"message": message}, message)


@instances.command("rm")
@click.argument("instance_ids", nargs=-1, required=True)
@pass_ctx
def instances_rm(c: Context, instance_ids: Sequence[str]) -> None:
    """Delete instances."""
    with c.client() as client:
        messages = [client.delete_instance(instance_id) for instance_id in instance_ids]
    c.emit({"messages": messages}, "\n".join(messages))


@cli.command()
@click.argument("instance_id")
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE",
              help="Change a field (repeatable; PATCH), then show the configuration.")
@pass_ctx
def config(c: Context, instance_id: str, settings: Sequence[str]) -> None:
    """Show INSTANCE_ID's configuration, or change fields of it with --set."""
    with c.client() as client:
        if settings:
            client.update_config(instance_id, **_assignments(settings))
        current = client.config(instance_id)
    c.emit(current, lambda: c.out.print(_key_values(current, f"{instance_id} configuration")))


# ---------------------------------------------------------------------------- arrays
@cli.command()
@click.argument("instance_id")
@click.argument("source", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Codes as .npy, or .npz with the parameters (data, scale, zero_point, axis).")
@click.option("--report", is_flag=True, help="Ask for the error report (SQNR, errors, clipped).")
@click.option("--channel-dim", type=int, default=None)
@click.option("--layer", "layer_name", default=None)
@pass_ctx
def quantize(c: Context, instance_id: str, source: Path, output: Path, report: bool, channel_dim: int | None,
             layer_name: str | None) -> None:
    """Quantize the array in SOURCE (.npy) and write the codes to OUTPUT."""
    array = np.load(source, allow_pickle=False)
    with c.client() as client:
        result = client.quantize(instance_id, array, report=report, channel_dim=channel_dim, layer_name=layer_name)
    codes = _storable(result.codes)
    if output.suffix == ".npz":
        members = {"data": codes, "scale": result.scale, "zero_point": result.zero_point,
                   "axis": result.axis, "block_size": result.block_size}
        kept: dict[str, Any] = {name: np.asarray(value) for name, value in members.items() if value is not None}
        np.savez(output, **kept)
    else:
        np.save(output, codes, allow_pickle=False)
    summary = {"output": str(output), "quantization_type": result.quantization_type,
               "shape": list(result.codes.shape), "dtype": str(result.codes.dtype), "scale": result.scale,
               "zero_point": result.zero_point, "axis": result.axis, "report": result.report}
    c.emit(summary, lambda: c.out.print(_key_values(summary, f"quantize {source.name}")))


@cli.command()
@click.argument("instance_id")
@click.argument("source", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The float32 values, as .npy.")
@click.option("--scale", default=None, help="Scale(s), comma-separated (default: the .npz's, else the instance's).")
@click.option("--zero-point", default=None, help="Zero point(s), comma-separated.")
@click.option("--channel-dim", type=int, default=None)
@click.option("--layer", "layer_name", default=None)
@pass_ctx
def dequantize(c: Context, instance_id: str, source: Path, output: Path, scale: str | None, zero_point: str | None,
               channel_dim: int | None, layer_name: str | None) -> None:
    """Dequantize the codes in SOURCE: a .npy, or the .npz `quantize -o x.npz` wrote (its parameters used)."""
    scales: Any = _numbers(scale, float)
    zero_points: Any = _numbers(zero_point, int)
    if source.suffix == ".npz":
        with np.load(source, allow_pickle=False) as archive:
            codes = archive["data"]
            scales = archive["scale"] if scales is None and "scale" in archive else scales
            zero_points = archive["zero_point"] if zero_points is None and "zero_point" in archive else zero_points
            if channel_dim is None and "axis" in archive:
                channel_dim = int(archive["axis"])
    else:
        codes = np.load(source, allow_pickle=False)
    with c.client() as client:
        values = client.dequantize(instance_id, codes, scale=scales, zero_point=zero_points, channel_dim=channel_dim,
                                   layer_name=layer_name)
    np.save(output, values, allow_pickle=False)
    c.emit({"output": str(output), "shape": list(values.shape), "dtype": str(values.dtype)},
           f"wrote {output} ({values.dtype}, shape {list(values.shape)})")


@cli.command()
@click.argument("instance_id")
@click.argument("batches", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--channel-dim", type=int, default=None)
@pass_ctx
def calibrate(c: Context, instance_id: str, batches: Sequence[Path], channel_dim: int | None) -> None:
    """Calibrate INSTANCE_ID from the 2-D arrays in BATCHES (.npy files)."""
    arrays = [np.load(path, allow_pickle=False) for path in batches]
    with c.client() as client:
        answer = client.calibrate(instance_id, arrays, channel_dim=channel_dim)
    c.emit(answer, lambda: c.out.print(_key_values(answer, f"calibrate {instance_id} ({len(arrays)} batches)")))


@cli.command()
@click.argument("instance_id")
@pass_ctx
def stats(c: Context, instance_id: str) -> None:
    """INSTANCE_ID's statistics."""
    with c.client() as client:
        figures = client.stats(instance_id)
    c.emit(figures, lambda: c.out.print(_key_values(figures, f"{instance_id} statistics")))


@cli.command()
@click.argument("instance_id")
@click.argument("source", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--target-sqnr", type=float, default=None, help="Recommend the smallest candidate with this SQNR (dB).")
@click.option("--candidates", "candidates_json", default=None,
              help="Candidate configurations as a JSON list (default: the server's grid).")
@pass_ctx
def evaluate(c: Context, instance_id: str, source: Path, target_sqnr: float | None,
             candidates_json: str | None) -> None:
    """Compare candidate configurations on the array in SOURCE (.npy); the instance is not changed. Exits 9 when a
    --target-sqnr is given and no candidate meets it."""
    candidates = json.loads(candidates_json) if candidates_json else None
    array = np.load(source, allow_pickle=False)
    with c.client() as client:
        answer = client.evaluate(instance_id, array, candidates=candidates, target=target_sqnr)
    c.emit(answer, lambda: c.out.print(_evaluation_table(answer)))
    if target_sqnr is not None and answer.get("recommended") is None:
        if not c.as_json:
            c.err.print(f"no candidate reaches {target_sqnr} dB")
        sys.exit(EXIT_TARGET_NOT_MET)


# ---------------------------------------------------------------------------- models
@cli.command()
@click.argument("instance_id")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Download the quantized checkpoint here (waits for the job).")
@click.option("--watch", is_flag=True, help="Follow the job to its end, then show the per-layer report.")
@click.option("--timeout", "wait_timeout", type=float, default=None, help="Give up waiting after this many seconds.")
@pass_ctx
def model(c: Context, instance_id: str, paths: Sequence[Path], output: Path | None, watch: bool,
          wait_timeout: float | None) -> None:
    """Quantize a checkpoint (PATHS: a .safetensors or .npz file, or the shards of one) as a job on INSTANCE_ID:
    upload with a progress bar; with --watch or -o, follow the job and show its report, worst layers first."""
    interactive = not c.as_json
    with c.client() as client:
        job = client.submit_model(instance_id, list(paths), progress=interactive)
        if not (watch or output):
            c.emit(job.data, f"job {job.id} {job.status}")
            return
        job.wait(progress=interactive, timeout=wait_timeout)
        report = job.report()
        if output is not None:
            job.download(output, progress=interactive)
    result = {"job": job.data, "report": report, "output": None if output is None else str(output)}
    c.emit(result, lambda: _print_report(c, job.data, report, output))


# ---------------------------------------------------------------------------- rendering
def _assignments(settings: Sequence[str]) -> dict[str, Any]:
    """KEY=VALUE pairs; each value read as JSON (numbers, true/false, null, lists), else as a string."""
    out: dict[str, Any] = {}
    for item in settings:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--set")
        try:
            out[key.strip()] = json.loads(raw)
        except ValueError:
            out[key.strip()] = raw
    return out


def _storable(codes: np.ndarray) -> np.ndarray:
    """float8 / bfloat16 codes as their bit patterns (uint8 / uint16), as the server's .npy answers carry them:
    numpy's .npy format has no such dtypes, and dequantize reads the bit patterns back by the instance's type."""
    if codes.dtype.name in BIT_PATTERN_TYPES:
        return codes.view(np.uint8 if codes.dtype.itemsize == 1 else np.uint16)
    return codes


def _numbers(raw: str | None, kind: type) -> Any:
    if raw is None:
        return None
    try:
        items = [kind(item) for item in raw.split(",")]
    except ValueError:
        raise click.BadParameter(f"{raw!r} is not a comma-separated list of numbers") from None
    return items[0] if len(items) == 1 else items


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray | np.generic):
        return value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, list) and len(value) > 8:
        return f"[{', '.join(_cell(v) for v in value[:8])}, ... ({len(value)})]"
    if isinstance(value, dict | list):
        return json.dumps(_plain(value))
    return str(value)


def _key_values(data: dict[str, Any], title: str) -> Table:
    table = Table(title=title, show_header=False)
    table.add_column(style="bold")
    table.add_column()
    for key, value in data.items():
        table.add_row(key, _cell(value))
    return table


EVALUATE_COLUMNS = ("bits", "bytes", "sqnr_db", "max_abs_error", "clipped_share", "ms")


def _evaluation_table(answer: dict[str, Any]) -> Table:
    recommended = answer.get("recommended")
    table = Table(title=f"candidates (target {_cell(answer.get('target'))})")
    table.add_column("config")
    for column in EVALUATE_COLUMNS:
        table.add_column(column, justify="right")
    for candidate in answer.get("candidates", []):
        mark = " *" if recommended is not None and candidate == recommended else ""
        table.add_row(_config_label(candidate.get("config", {})) + mark,
                      *[_cell(candidate.get(column)) for column in EVALUATE_COLUMNS])
    return table


def _config_label(config: dict[str, Any]) -> str:
    """The fields that tell candidates apart."""
    parts = [str(config.get("quantization_type", "?"))]
    if config.get("num_bits") is not None:
        parts.append(f"{config['num_bits']}b")
    parts.append("per-channel" if config.get("per_channel") else "per-tensor")
    parts.append("sym" if config.get("symmetric") else "asym")
    if config.get("calibration_method"):
        parts.append(str(config["calibration_method"]).lower())
    return " ".join(parts)


REPORT_COLUMNS = {"name": "layer", "shape": "shape", "action": "action", "quantization_type": "type",
                  "scheme": "scheme", "sqnr_db": "SQNR dB", "max_abs_error": "max error", "clipped": "clipped",
                  "bytes_in": "bytes in", "bytes_out": "bytes out"}


def worst_first(layers: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Quantized layers by SQNR, lowest first (an exact layer, SQNR null, last among them), then the others."""
    def key(layer: dict[str, Any]) -> tuple[int, float]:
        if layer.get("action") != "quantized":
            return (2, 0.0)
        sqnr = layer.get("sqnr_db")
        return (1, 0.0) if sqnr is None else (0, float(sqnr))
    return sorted(layers, key=key)


def _print_report(c: Context, job: dict[str, Any], report: dict[str, Any], output: Path | None) -> None:
    table = Table(title=f"job {job.get('job_id')} {job.get('status')}: layers, worst first")
    for column, title in REPORT_COLUMNS.items():
        table.add_column(title, justify="left" if column in ("name", "action", "scheme") else "right",
                         no_wrap=column in ("name", "shape"))
    for layer in worst_first(report.get("layers", [])):
        table.add_row(*[_cell(layer.get(column)) for column in REPORT_COLUMNS])
    c.out.print(table)
    summary = report.get("summary") or job.get("summary")
    if summary:
        c.out.print(_key_values({k: v for k, v in summary.items() if k != "worst_layers"}, "summary"))
    if output is not None:
        c.out.print(f"wrote {output}")


def main() -> None:
    cli(prog_name="quantsite")
