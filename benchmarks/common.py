"""Shared pieces of the benchmark scripts: arguments, timing, tables, machine description.

Every script under ``benchmarks/`` follows one convention, which ``run_all.py`` relies on:
it accepts ``--quick`` (small sizes, seconds) and ``--out FILE.md``, prints markdown tables
whose figures are ratios against a baseline measured in the same run, and writes those
tables to ``--out`` together with the exact command that produced them.

Only the standard library is imported at module level; torch and onnxruntime are looked
up lazily so that scripts which do not use them stay light.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


class BenchmarkError(RuntimeError):
    """A benchmark could not run; the message says which one and why."""


# ---------------------------------------------------------------- arguments and output


def benchmark_parser(description: str, *, device: bool = False) -> argparse.ArgumentParser:
    """An ArgumentParser with the common ``--quick`` / ``--out`` (and ``--device``) options."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--quick", action="store_true", help="small sizes and few repeats (seconds, for CI)"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="also write the tables and the command to FILE.md"
    )
    if device:
        parser.add_argument(
            "--device",
            default="auto",
            help="auto (CUDA when present, else CPU), cpu, cuda or cuda:N",
        )
    return parser


def command_line(argv: Sequence[str] | None = None) -> str:
    """The command that ran this script, as a user would type it from the repository root."""
    argv = list(sys.argv if argv is None else argv)
    script = Path(argv[0])
    with contextlib.suppress(ValueError):
        script = script.resolve().relative_to(Path.cwd().resolve())
    return shlex.join(["python", str(script), *argv[1:]])


def report_markdown(tables: Sequence[Table], command: str) -> str:
    """The text of an ``--out`` file: the command, then every table."""
    parts = [f"Command: `{command}`", *(table.to_markdown() for table in tables)]
    return "\n\n".join(parts) + "\n"


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file and rename: never a half-written file."""
    path = Path(path)
    if path.parent and not path.parent.exists():
        raise BenchmarkError(f"--out {path}: folder {path.parent} does not exist")
    add_repo_to_path()
    from lapo_ros.common.files import atomic_path

    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding="utf-8")


def emit(tables: Sequence[Table], out: Path | None, argv: Sequence[str] | None = None) -> None:
    """Print the tables and, with ``--out``, write them and the command to that file."""
    text = report_markdown(tables, command_line(argv))
    print(text, end="", flush=True)
    if out is not None:
        write_text_atomic(out, text)


# ---------------------------------------------------------------- tables and ratios


@dataclass
class Table:
    """A markdown table with a title and notes (what the baseline is, what was skipped)."""

    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add_row(self, *cells: object) -> None:
        if len(cells) != len(self.columns):
            raise BenchmarkError(
                f"table {self.title!r}: row has {len(cells)} cells, expected {len(self.columns)}"
            )
        self.rows.append([str(cell) for cell in cells])

    def to_markdown(self) -> str:
        def line(cells: Sequence[str]) -> str:
            return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

        lines = [f"#### {self.title}", "", line(self.columns)]
        lines.append("| " + " | ".join("---" for _ in self.columns) + " |")
        lines.extend(line(row) for row in self.rows)
        if self.notes:
            lines.append("")
            lines.extend(f"- {note}" for note in self.notes)
        return "\n".join(lines)


def ratio(value: float, baseline: float) -> str:
    """``value / baseline`` as ``1.23x`` (for throughputs and sizes)."""
    if baseline == 0 or value != value or baseline != baseline:
        return "n/a"
    return f"{value / baseline:.2f}x"


def speedup(seconds: float, baseline_seconds: float) -> str:
    """How many times faster than the baseline a time is: ``baseline / seconds``."""
    return ratio(baseline_seconds, seconds)


def milliseconds(seconds: float) -> str:
    return f"{seconds * 1e3:.2f}" if seconds < 1.0 else f"{seconds * 1e3:.0f}"


def mebibytes(num_bytes: float) -> str:
    return f"{num_bytes / 2**20:.0f}"


def millions(count: float) -> str:
    return f"{count / 1e6:.2f} M"


# ---------------------------------------------------------------- timing


@dataclass
class Timing:
    """Wall-clock seconds of repeated calls."""

    samples: list[float]

    def percentile(self, q: float) -> float:
        """Linear-interpolated percentile (q in 0..100) of the samples."""
        ordered = sorted(self.samples)
        if not ordered:
            raise BenchmarkError("no timing samples")
        position = (len(ordered) - 1) * q / 100.0
        low = int(position)
        high = min(low + 1, len(ordered) - 1)
        return ordered[low] + (ordered[high] - ordered[low]) * (position - low)

    @property
    def p50(self) -> float:
        return self.percentile(50)

    @property
    def p99(self) -> float:
        return self.percentile(99)

    @property
    def mean(self) -> float:
        return sum(self.samples) / len(self.samples)


def time_calls(
    function: Callable[[], object],
    *,
    repeats: int,
    warmup: int = 1,
    synchronize: Callable[[], None] | None = None,
) -> Timing:
    """Time ``repeats`` calls of ``function`` after ``warmup`` untimed ones.

    ``synchronize`` (e.g. ``torch.cuda.synchronize``) runs before each clock read so that
    asynchronous device work is counted in the call that queued it.
    """
    sync = synchronize or (lambda: None)
    for _ in range(warmup):
        function()
    sync()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        sync()
        samples.append(time.perf_counter() - start)
    return Timing(samples)


def time_interleaved(
    functions: dict[str, Callable[[], object]],
    *,
    repeats: int,
    warmup: int = 1,
    synchronize: Callable[[], None] | None = None,
) -> dict[str, Timing]:
    """Time several variants round-robin (A, B, A, B, ...) so load drift hits all alike.

    On a shared machine the load changes over seconds; timing variant A fully and then
    variant B would put that change into their ratio.
    """
    sync = synchronize or (lambda: None)
    for _ in range(warmup):
        for function in functions.values():
            function()
    sync()
    samples: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            start = time.perf_counter()
            function()
            sync()
            samples[name].append(time.perf_counter() - start)
    return {name: Timing(values) for name, values in samples.items()}


QUICK_NOTE = "--quick: small sizes, one CPU thread; a smoke test, not figures to compare."


def quick_threads(quick: bool) -> None:
    """With ``--quick``, one CPU thread here and in child processes (set before torch loads).

    On a busy machine two OpenMP threads that wait on each other can run ten times slower
    than one; a smoke run should not depend on the neighbours' load.
    """
    if quick:
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[name] = "1"
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(1)


def add_repo_to_path() -> None:
    """Let ``python benchmarks/x.py`` import the checkout's ``lapo_ros`` without installing it."""
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(1, str(REPO_ROOT))


# ---------------------------------------------------------------- devices and memory


def resolve_device(name: str):
    """``--device`` as the learning core resolves it (``auto``: CUDA when available)."""
    add_repo_to_path()
    from lapo_ros.lapo.compute import DeviceError
    from lapo_ros.lapo.compute import resolve_device as resolve

    try:
        return resolve(name)
    except DeviceError as error:
        raise BenchmarkError(f"--device {name}: {error}") from error


def synchronizer(device) -> Callable[[], None] | None:
    """``torch.cuda.synchronize`` for a CUDA device, else None."""
    import torch

    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return None


def _proc_status_bytes(field_name: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field_name}:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def rss_bytes() -> int:
    """Current resident set size of this process."""
    current = _proc_status_bytes("VmRSS")
    return current if current is not None else peak_rss_bytes()


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far.

    Linux ``VmHWM`` starts afresh at exec; ``ru_maxrss`` (the fallback elsewhere) keeps
    the peak of the forking parent, so a child started from a big process would report
    the parent's peak.
    """
    peak = _proc_status_bytes("VmHWM")
    if peak is not None:
        return peak
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss if sys.platform == "darwin" else maxrss * 1024


def run_json_subprocesses(
    jobs: dict[str, Sequence[str]], *, timeout_s: float
) -> dict[str, dict]:
    """Run Python helpers side by side, each in a fresh process; return their JSON results.

    Each helper prints a JSON object as its last stdout line. Use this for figures that
    concurrency does not change (memory, counts), never for times.
    """
    processes = {
        name: subprocess.Popen(
            [sys.executable, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for name, argv in jobs.items()
    }
    results: dict[str, dict] = {}
    deadline = time.monotonic() + timeout_s
    try:
        for name, process in processes.items():
            try:
                stdout, stderr = process.communicate(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired as error:
                raise BenchmarkError(f"{name}: no result within {timeout_s:.0f} s") from error
            lines = stdout.strip().splitlines()
            if process.returncode != 0 or not lines:
                tail = stderr.strip()[-2000:]
                raise BenchmarkError(f"{name}: exit status {process.returncode}\n{tail}")
            try:
                results[name] = json.loads(lines[-1])
            except json.JSONDecodeError as error:
                raise BenchmarkError(
                    f"{name}: last output line is not JSON: {lines[-1]!r}"
                ) from error
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()
    return results


# ---------------------------------------------------------------- machine description


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_total() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 2**20:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return "unknown"


def _version(module: str) -> str:
    try:
        return __import__(module).__version__
    except Exception:  # noqa: BLE001 - an absent or broken package is reported, not fatal
        return "not installed"


def gpu_description() -> str | None:
    """``NVIDIA H100 80GB HBM3 (CUDA 13.0)``-style text, or None when there is no GPU."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return f"{', '.join(names)} (CUDA {torch.version.cuda})"


def machine_description() -> list[tuple[str, str]]:
    """(field, value) pairs describing where the numbers were measured."""
    cores = os.cpu_count() or 0
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    rows = [
        ("CPU", _cpu_model()),
        ("CPU cores", f"{usable} usable of {cores} logical"),
        ("RAM", _memory_total()),
        ("OS", f"{platform.system()} {platform.release()} ({platform.machine()})"),
        ("Python", platform.python_version()),
        ("torch", _version("torch")),
        ("torchvision", _version("torchvision")),
        ("onnxruntime", _version("onnxruntime")),
        ("numpy", _version("numpy")),
        ("h5py", _version("h5py")),
    ]
    try:
        import torch

        rows.append(("torch CPU threads", str(torch.get_num_threads())))
    except ImportError:
        pass
    rows.append(("GPU", gpu_description() or "none (CPU only)"))
    return rows


def machine_markdown() -> str:
    table = Table("Machine", ["field", "value"])
    for name, value in machine_description():
        table.add_row(name, value)
    return table.to_markdown()
