"""Benchmarks: the shared helpers, run_all's report, and each script's --quick smoke run."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = REPO_ROOT / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import common  # noqa: E402
import run_all  # noqa: E402


def run_script(script: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    return subprocess.run(
        [sys.executable, str(script), *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def markdown_tables(text: str) -> dict[str, list[list[str]]]:
    """{title: rows including the header} of every '#### title' table; checks their shape."""
    tables: dict[str, list[list[str]]] = {}
    for block in re.split(r"^#### ", text, flags=re.MULTILINE)[1:]:
        title, _, body = block.partition("\n")
        lines = [line for line in body.splitlines() if line.startswith("|")]
        rows = [[cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]] for line in lines]
        assert len(rows) >= 3, f"table {title!r} has no data rows"
        assert all(set(cell) == {"-"} for cell in rows[1]), f"table {title!r}: no separator"
        assert {len(row) for row in rows} == {len(rows[0])}, f"table {title!r}: ragged rows"
        tables[title] = [rows[0], *rows[2:]]
    return tables


QUICK_SCRIPTS = ("encoders", "inference_backends", "training_step", "seed_comparison")


# the tests that read quick_runs go to one test worker, which runs the scripts once
QUICK_RUNS = pytest.mark.xdist_group("quick_runs")


@pytest.fixture(scope="module")
def quick_runs(tmp_path_factory) -> dict[str, tuple[subprocess.CompletedProcess, Path]]:
    """Each of our scripts run once with --quick, side by side (each uses one CPU thread)."""
    folder = tmp_path_factory.mktemp("quick_runs")
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    started = {}
    for script in QUICK_SCRIPTS:
        out = folder / f"{script}.md"
        command = [sys.executable, str(BENCHMARKS / f"{script}.py"), "--quick", "--out", str(out)]
        process = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        started[script] = (command, process, out)
    runs = {}
    for script, (command, process, out) in started.items():
        stdout, stderr = process.communicate(timeout=600)
        runs[script] = (
            subprocess.CompletedProcess(command, process.returncode, stdout, stderr),
            out,
        )
    return runs


def check_quick_run(runs, script: str) -> tuple[str, dict[str, list[list[str]]]]:
    completed, out = runs[script]
    assert completed.returncode == 0, completed.stderr[-3000:]
    written = out.read_text()
    assert written.startswith(f"Command: `python benchmarks/{script}.py --quick --out {out}`")
    assert written == completed.stdout, "--out must hold exactly what was printed"
    return written, markdown_tables(written)


# ---------------------------------------------------------------- common.py


def test_timing_percentiles_interpolate():
    timing = common.Timing([4.0, 1.0, 3.0, 2.0, 5.0])
    assert timing.p50 == 3.0
    assert timing.percentile(0) == 1.0 and timing.percentile(100) == 5.0
    assert timing.percentile(25) == 2.0
    assert timing.p99 == pytest.approx(4.96)
    assert timing.mean == 3.0
    with pytest.raises(common.BenchmarkError, match="no timing samples"):
        common.Timing([]).percentile(50)


def test_time_interleaved_runs_variants_round_robin():
    calls: list[str] = []
    timings = common.time_interleaved(
        {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=3, warmup=1
    )
    assert calls == ["a", "b"] * 4
    assert [len(t.samples) for t in timings.values()] == [3, 3]


def test_table_markdown_and_ratios():
    table = common.Table("Demo", ["name", "value"], notes=["a note"])
    table.add_row("x|y", 1.5)
    assert table.to_markdown() == (
        "#### Demo\n\n| name | value |\n| --- | --- |\n| x\\|y | 1.5 |\n\n- a note"
    )
    with pytest.raises(common.BenchmarkError, match="row has 1 cells, expected 2"):
        table.add_row("only one")
    assert common.ratio(3.0, 2.0) == "1.50x"
    assert common.speedup(0.5, 2.0) == "4.00x"
    assert common.ratio(1.0, 0.0) == "n/a"


def test_write_text_atomic_names_a_missing_folder(tmp_path):
    target = tmp_path / "report.md"
    common.write_text_atomic(target, "hello\n")
    assert target.read_text() == "hello\n"
    assert [p.name for p in tmp_path.iterdir()] == ["report.md"]
    with pytest.raises(common.BenchmarkError, match="does not exist"):
        common.write_text_atomic(tmp_path / "missing" / "report.md", "x")


def test_fresh_process_peak_rss_ignores_the_parent_peak():
    ballast = bytearray(300 * 2**20)  # this process's peak is now >= 300 MiB
    ballast[::4096] = b"x" * len(ballast[::4096])
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import json, common; "
        "print(json.dumps({'peak': common.peak_rss_bytes()}))"
    )
    results = common.run_json_subprocesses({"child": ["-c", code, str(BENCHMARKS)]}, timeout_s=60)
    assert common.peak_rss_bytes() >= 300 * 2**20
    assert results["child"]["peak"] < 150 * 2**20
    del ballast


def test_json_subprocess_failure_names_the_job():
    with pytest.raises(common.BenchmarkError, match="broken helper: exit status 3"):
        common.run_json_subprocesses(
            {"broken helper": ["-c", "import sys; sys.exit(3)"]}, timeout_s=60
        )


def test_machine_description_names_cpu_and_gpu():
    fields = dict(common.machine_description())
    assert {"CPU", "CPU cores", "RAM", "torch", "onnxruntime", "GPU"} <= set(fields)
    if fields["GPU"].startswith("none"):
        assert "CPU only" in fields["GPU"]


# ---------------------------------------------------------------- run_all.py

GOOD_SCRIPT = """
import sys
from pathlib import Path
sys.path.insert(0, {benchmarks!r})
from common import Table, benchmark_parser, emit

args = benchmark_parser("good").parse_args()
table = Table("Good", ["row", "value"])
table.add_row("quick" if args.quick else "full", 1)
if __name__ == "__main__":
    emit([table], args.out)
"""

FAILING_SCRIPT = """
if __name__ == "__main__":
    raise SystemExit("bad benchmark: missing input file data.hdf5")
"""


def test_run_all_writes_every_table_and_reports_failures(tmp_path):
    folder = tmp_path / "benchmarks"
    folder.mkdir()
    (folder / "good.py").write_text(GOOD_SCRIPT.format(benchmarks=str(BENCHMARKS)))
    (folder / "failing.py").write_text(FAILING_SCRIPT)
    (folder / "helper.py").write_text("VALUE = 1\n")  # no __main__ guard: not a benchmark
    out = tmp_path / "BENCHMARKS.md"
    completed = run_script(
        BENCHMARKS / "run_all.py", "--quick", "--out", str(out), "--benchmarks-dir", str(folder)
    )
    assert completed.returncode == 1, completed.stderr
    report = out.read_text()
    assert "#### Machine" in report and "| GPU |" in report
    assert "| [failing](#failing) | FAILED |" in report
    assert "| [good](#good) | ok |" in report
    assert "## helper" not in report
    good = report.split("## good", 1)[1]
    assert good.strip().startswith(f"Command: `python {folder / 'good.py'} --quick`")
    assert " --out " not in good.split("\n", 2)[1]
    assert markdown_tables(good)["Good"] == [["row", "value"], ["quick", "1"]]
    assert "bad benchmark: missing input file data.hdf5" in report.split("## failing", 1)[1]
    if common.gpu_description() is None:
        assert "every row below is CPU-only" in report


def test_run_all_orders_the_real_scripts_and_rejects_unknown_names():
    names = [path.stem for path in run_all.discover(BENCHMARKS)]
    assert names[:3] == ["encoders", "inference_backends", "training_step"]
    assert "common" not in names and "run_all" not in names
    with pytest.raises(SystemExit, match="no benchmark named nonexistent"):
        run_all.select(run_all.discover(BENCHMARKS), ["nonexistent"], None)


# ---------------------------------------------------------------- the scripts, --quick


@pytest.mark.slow
@QUICK_RUNS
def test_encoders_quick(quick_runs):
    _, tables = check_quick_run(quick_runs, "encoders")
    (rows,) = tables.values()
    assert rows[0] == [
        "metric",
        "3x ResNet18 (one per camera)",
        "9-ch ResNet18Encoder",
        "9-ch vs 3x",
    ]
    by_metric = {row[0]: row[1:] for row in rows[1:]}
    # parameters are exact: three ResNet18 trunks + 1536->256 vs one 9-channel trunk + 512->256
    assert by_metric["encoder parameters"] == ["33.92 M", "11.33 M", "0.33x"]
    for metric in ("inference batch 1, p50 (ms)", "training step batch 4, median (ms)"):
        assert float(by_metric[metric][0]) > 0 and float(by_metric[metric][1]) > 0
        assert by_metric[metric][2].endswith("x faster")
    memory = [m for m in by_metric if m.startswith(("peak RSS", "CUDA max_memory"))]
    assert memory
    for metric in memory:
        assert float(by_metric[metric][0]) > 0 and float(by_metric[metric][1]) > 0


@pytest.mark.slow
@QUICK_RUNS
def test_inference_backends_quick(quick_runs):
    _, tables = check_quick_run(quick_runs, "inference_backends")
    (rows,) = tables.values()
    by_backend = {row[0]: row[1:] for row in rows[1:]}
    assert {"eager torch, CPU fp32", "TorchScript, CPU fp32", "onnxruntime, CPU"} <= set(by_backend)
    assert by_backend["onnxruntime, CPU"][0] == "CPUExecutionProvider"
    for name, (_, p50, p99, versus, difference) in by_backend.items():
        assert 0 < float(p50) <= float(p99), name
        assert versus.endswith("x faster")
        if "fp16" not in name and "bf16" not in name:
            assert float(difference) <= 1e-4, f"{name} disagrees with eager torch"


@pytest.mark.slow
@QUICK_RUNS
def test_training_step_quick(quick_runs):
    written, tables = check_quick_run(quick_runs, "training_step")
    (rows,) = tables.values()
    by_variant = {row[0]: row[1:] for row in rows[1:]}
    assert list(by_variant)[0].startswith("default")
    assert by_variant[list(by_variant)[0]][-1] == "1.00x"
    assert "channels_last" in by_variant
    assert "fused Adam" in by_variant
    assert any(name.startswith("default + replay buffer") for name in by_variant)
    for name, (median, p99, throughput, _) in by_variant.items():
        assert 0 < float(median) <= float(p99) and float(throughput) > 0, name
    assert "torch.compile not measured" in written


@pytest.mark.slow
@QUICK_RUNS
def test_seed_comparison_quick(quick_runs):
    _, tables = check_quick_run(quick_runs, "seed_comparison")
    comparison, allocator = tables.values()
    by_update = {row[0]: row[1:] for row in comparison[1:]}
    seed, *_ = by_update
    assert seed.startswith("seed-equivalent") and by_update[seed][-2:] == ["1.00x", "1.00x"]
    flops = {name: float(row[3]) for name, row in by_update.items()}
    lapo = next(name for name in by_update if name.startswith("MultimodalLatent, LAPO's"))
    default = next(name for name in by_update if name.startswith("shipped default agent,"))
    assert flops[lapo] == pytest.approx(flops[seed], rel=0.05)  # the seed's encoder passes
    assert flops[default] > 2 * flops[seed]  # two critic pairs and the VAE's encoder pass
    assert by_update[default][0] == "fp32"  # as shipped
    rows = {row[0]: row[1:] for row in allocator[1:]}
    assert rows["as it comes (baseline)"][-1] == "1.00x"
    assert all(float(row[0]) > 0 for row in rows.values())


def test_quick_configs_are_smaller_than_full():
    import encoders
    import inference_backends
    import training_step

    assert encoders.QUICK.image_size < encoders.FULL.image_size == 224
    assert encoders.FULL.batch_sizes == (32, 64)
    assert inference_backends.FULL.image_size == 224
    assert training_step.QUICK.batch_size < training_step.FULL.batch_size


def test_encoder_variants_accept_the_same_input():
    import encoders
    import torch

    image = torch.randint(0, 256, (2, 9, 32, 32), dtype=torch.uint8)
    for variant in encoders.VARIANTS:
        module, _ = encoders.build_encoder(variant, 256)
        assert module.eval()(image).shape == (2, 256)
    with pytest.raises(ValueError, match="unknown encoder variant 'four'"):
        encoders.build_encoder("four", 256)


def test_script_help_is_clean():
    for script in ("encoders", "inference_backends", "training_step", "seed_comparison",
                   "run_all"):
        completed = run_script(BENCHMARKS / f"{script}.py", "--help", timeout=120)
        assert completed.returncode == 0, completed.stderr
        assert "--quick" in completed.stdout and "--out" in completed.stdout
        assert "measure-memory" not in completed.stdout


@pytest.mark.slow
def test_learning_quick_reports_both_algorithms_on_both_datasets(tmp_path):
    out = tmp_path / "learning.md"
    completed = run_script(BENCHMARKS / "learning.py", "--quick", "--out", str(out))
    assert completed.returncode == 0, completed.stderr
    (rows,) = markdown_tables(out.read_text()).values()
    header, body = rows[0], rows[1:]
    assert header[:2] == ["data", "algorithm"] and "touched blue" in header
    assert [(row[0].split(" ")[0], row[1]) for row in body] == [
        ("expert", "BC (MSE)"), ("expert", "LAPO"),
        ("heterogeneous", "BC (MSE)"), ("heterogeneous", "LAPO")]
    for row in body:  # 2 evaluation episodes: 0, 50 or 100 %; ratios n/a where BC is 0
        assert row[header.index("mean success")] in {"0%", "50%", "100%"}
        for column in ("vs BC", "vs expert"):
            assert re.fullmatch(r"\d+\.\d\dx|n/a", row[header.index(column)]), row
    assert "Baseline of this run: the scripted expert" in out.read_text()
    assert ("Trained by the trainer of training/train.py with config/train.yaml"
            in out.read_text() and "; no --lapo-set." in out.read_text())


@pytest.mark.slow
def test_learning_with_chunks_runs_each_chunk_policy_in_both_node_modes(tmp_path):
    out = tmp_path / "chunks.md"
    completed = run_script(BENCHMARKS / "learning.py", "--quick", "--datasets",
                           "heterogeneous", "--chunk-size", "2", "--out", str(out))
    assert completed.returncode == 0, completed.stderr
    (rows,) = markdown_tables(out.read_text()).values()
    header, body = rows[0], rows[1:]
    column = header.index("chunk size, execution")
    assert [(row[1], row[column]) for row in body] == [
        (algo, f"2, {mode}") for algo in ("BC (MSE)", "LAPO")
        for mode in ("open loop", "temporal ensemble")]
    assert "--chunk-size 2: both agents train on action chunks of 2 steps" in out.read_text()


@pytest.mark.slow
def test_learning_oracle_weights_give_the_failed_demonstrations_no_weight(tmp_path):
    out = tmp_path / "oracle.md"
    completed = run_script(BENCHMARKS / "learning.py", "--quick", "--datasets",
                           "heterogeneous", "--algorithms", "lapo", "--oracle-weights",
                           "--advantages", "--out", str(out))
    assert completed.returncode == 0, completed.stderr
    assert "--oracle-weights: LAPO's VAE weights from the recorded outcomes" in out.read_text()
    *_, by_phase = markdown_tables(out.read_text()).values()
    shares = {row[1]: [int(cell.rstrip("%")) for cell in row[2:]] for row in by_phase[1:]}
    assert shares["wrong_target"] == [0, 0, 0, 0], by_phase  # every one of them failed
    quarters = zip(*shares.values(), strict=True)
    assert all(sum(quarter) in {99, 100, 101} for quarter in quarters), by_phase


@pytest.mark.slow
def test_learning_ablation_overrides_one_lapo_setting_and_names_it(tmp_path):
    out = tmp_path / "ablation.md"
    completed = run_script(BENCHMARKS / "learning.py", "--quick", "--datasets",
                           "heterogeneous", "--algorithms", "lapo", "--lapo-set",
                           "encoder_action_weight=0", "--advantages", "--prior-mean",
                           "--out", str(out))
    assert completed.returncode == 0, completed.stderr
    assert "LAPO changed by --lapo-set: {'encoder_action_weight': 0}" in out.read_text()
    success, by_kind, by_phase = markdown_tables(out.read_text()).values()
    (row,) = success[1:]
    assert row[success[0].index("LAPO decoder at z = 0")] in {"0%", "50%", "100%"}
    header, body = by_kind[0], by_kind[1:]
    assert [row[:2] for row in body] == [["heterogeneous", kind]
                                         for kind in ("expert", "noisy", "wrong_target")]
    for row in body:
        assert re.fullmatch(r"[+-]\d\.\d{3}", row[header.index("mean advantage")]), row
        assert re.fullmatch(r"\d+%", row[header.index("advantage > 0")]), row
    assert [row[:2] for row in by_phase[1:]] == [row[:2] for row in body]
    for phase in range(2, 6):  # the kinds' shares of one quarter's weight: 100% or none
        total = sum(int(row[phase].rstrip("%")) for row in by_phase[1:])
        assert total in {0, 99, 100, 101}, by_phase
    for bad, named in (("encoder_action_weigth=0", "encoder_action_weigth"),
                       ("encoder_action_weight=-1", "encoder_action_weight"), ("novalue", "KEY")):
        completed = run_script(BENCHMARKS / "learning.py", "--quick", "--lapo-set", bad)
        assert completed.returncode == 2 and named in completed.stderr, completed.stderr
