"""Run every benchmark script in ``benchmarks/`` and write BENCHMARKS.md.

    python benchmarks/run_all.py [--quick] [--out BENCHMARKS.md] [--only NAME ...]
                                 [--skip NAME ...] [--timeout SECONDS]

A benchmark script is any ``benchmarks/*.py`` with a ``__main__`` guard (this file and
``common.py`` excepted); each accepts ``--quick`` and ``--out FILE.md``. Every script runs
in its own process, one after the other (so they do not share the machine), with the
checkout on PYTHONPATH. The report holds the machine description, then each script's
tables with the command that reproduces them; a script that fails is reported with its
error and makes the exit status 1, but the others still run and the file is still written.
"""

from __future__ import annotations

import argparse
import datetime
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from common import REPO_ROOT, command_line, gpu_description, machine_markdown, write_text_atomic

BENCHMARKS_DIR = Path(__file__).resolve().parent
NOT_BENCHMARKS = {"common.py", "run_all.py"}
# The order: encoder claims, inference, training, then data, conversion, node, learning.
PREFERRED_ORDER = (
    "encoders", "inference_backends", "training_step", "seed_comparison", "trainer_io",
    "sampler", "bag_to_hdf5", "image_resize", "node_latency", "learning",
)


@dataclass
class ScriptResult:
    name: str
    command: str
    seconds: float
    returncode: int
    report: str  # the script's --out file, or its error output when it failed

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def discover(folder: Path) -> list[Path]:
    """Benchmark scripts in ``folder``, in the report's order."""
    scripts = [
        path
        for path in folder.glob("*.py")
        if path.name not in NOT_BENCHMARKS
        and not path.name.startswith("_")
        and "__main__" in path.read_text(encoding="utf-8", errors="replace")
    ]

    def position(path: Path) -> tuple[int, str]:
        stem = path.stem
        rank = PREFERRED_ORDER.index(stem) if stem in PREFERRED_ORDER else len(PREFERRED_ORDER)
        return rank, stem

    return sorted(scripts, key=position)


def select(scripts: list[Path], only: list[str] | None, skip: list[str] | None) -> list[Path]:
    """Apply ``--only`` / ``--skip`` (script stems); unknown names are an error."""
    known = {path.stem for path in scripts}
    unknown = sorted({*(only or []), *(skip or [])} - known)
    if unknown:
        raise SystemExit(
            f"run_all: no benchmark named {', '.join(unknown)}; found {', '.join(sorted(known))}"
        )
    return [
        path
        for path in scripts
        if (only is None or path.stem in only) and (skip is None or path.stem not in skip)
    ]


def child_environment() -> dict[str, str]:
    """This environment with the checkout first on PYTHONPATH and unbuffered output."""
    env = dict(os.environ)
    paths = [str(REPO_ROOT), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def display_path(script: Path) -> str:
    try:
        return str(script.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(script)


def run_script(script: Path, quick: bool, timeout_s: float, scratch: Path) -> ScriptResult:
    """Run one script with ``--out`` into ``scratch``; never raises for the script's failure."""
    out = scratch / f"{script.stem}.md"
    flags = ["--quick"] if quick else []
    shown = " ".join(["python", display_path(script), *flags])
    start = time.perf_counter()
    try:
        completed = subprocess.run(
            [sys.executable, str(script), *flags, "--out", str(out)],
            cwd=REPO_ROOT,
            env=child_environment(),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        returncode, stderr = completed.returncode, completed.stderr
    except subprocess.TimeoutExpired as error:
        returncode = -1
        stderr = f"timed out after {timeout_s:.0f} s\n{(error.stderr or b'')[-3000:]!r}"
    seconds = time.perf_counter() - start
    if returncode == 0 and out.is_file():
        report = out.read_text(encoding="utf-8").replace(f" --out {out}", "").strip()
        if shown not in report:
            report = f"Command: `{shown}`\n\n{report}"
        return ScriptResult(script.stem, shown, seconds, 0, report)
    if returncode == 0:
        returncode, stderr = 1, f"exit status 0 but no --out file was written\n{stderr}"
    tail = "\n".join(stderr.strip().splitlines()[-30:])
    return ScriptResult(script.stem, shown, seconds, returncode, tail)


def cpu_only_statement() -> str:
    gpu = gpu_description()
    if gpu is None:
        return "No GPU on this machine: **every row below is CPU-only**."
    return (
        f"GPU: {gpu}. Each table names the device of its rows; rows measured on the CPU "
        "say so (device cpu, 'CPU' in the row name, or a 'CPU only' note)."
    )


def compose_report(results: list[ScriptResult], command: str, quick: bool) -> str:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Benchmarks",
        "",
        f"Made by `{command}` on {now}"
        + (" (--quick: small sizes, for smoke testing only, not for comparison)." if quick
           else "."),
        "Figures are ratios against a baseline measured in the same run; absolute times are "
        "context for this machine only.",
        "",
        cpu_only_statement(),
        "",
        machine_markdown(),
        "",
        "| benchmark | status | wall time (s) |",
        "| --- | --- | --- |",
    ]
    lines += [
        f"| [{r.name}](#{r.name}) | {'ok' if r.ok else 'FAILED'} "
        f"| {r.seconds:.0f} |"
        for r in results
    ]
    for result in results:
        lines += ["", f"## {result.name}", ""]
        if result.ok:
            lines.append(result.report)
        else:
            lines += [
                f"Command: `{result.command}` **failed** (exit status {result.returncode}):",
                "",
                "```",
                result.report,
                "```",
            ]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="run every script with --quick")
    parser.add_argument(
        "--out", type=Path, default=REPO_ROOT / "BENCHMARKS.md", help="report file to write"
    )
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these scripts")
    parser.add_argument("--skip", nargs="+", metavar="NAME", help="do not run these scripts")
    parser.add_argument(
        "--timeout", type=float, default=None,
        help="seconds per script (default 3600, 600 with --quick)",
    )
    parser.add_argument("--benchmarks-dir", type=Path, default=BENCHMARKS_DIR,
                        help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    scripts = select(discover(args.benchmarks_dir), args.only, args.skip)
    if not scripts:
        raise SystemExit(f"run_all: no benchmark scripts selected in {args.benchmarks_dir}")
    timeout = args.timeout or (600.0 if args.quick else 3600.0)
    results = []
    with tempfile.TemporaryDirectory(prefix="lapo_benchmarks_") as scratch:
        for script in scripts:
            print(f"run_all: {display_path(script)} ...", file=sys.stderr, flush=True)
            result = run_script(script, args.quick, timeout, Path(scratch))
            status = "ok" if result.ok else f"FAILED (exit status {result.returncode})"
            print(f"run_all: {result.name} {status} in {result.seconds:.0f} s",
                  file=sys.stderr, flush=True)
            results.append(result)
    argv_shown = None if argv is None else [sys.argv[0], *argv]
    write_text_atomic(args.out, compose_report(results, command_line(argv_shown), args.quick))
    print(f"run_all: wrote {args.out}", file=sys.stderr)
    return 0 if all(result.ok for result in results) else 1


if __name__ == "__main__":
    sys.exit(main())
