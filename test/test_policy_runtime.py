"""PolicyRuntime over real onnxruntime and TorchScript files with lapo_ros metadata."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from synthetic_policy import (
    expected_action,
    expected_chunk,
    export_affine_policy,
    make_metadata,
    metadata_with,
    replace_metadata,
    write_onnx_policy,
    write_torchscript_policy,
)

from lapo_ros.robot.runtime import PolicyRuntimeError, load_policy, resolve_backend

OFFSET = np.array([0.5, -0.25, 1.0], np.float32)


def _inputs(metadata, seed=0):
    rng = np.random.default_rng(seed)
    height, width = metadata.image_size
    image = rng.integers(0, 256, (1, 9, height, width), dtype=np.uint8)
    joint = rng.normal(size=(1, metadata.joint_dim)).astype(np.float32)
    return image, joint


@pytest.mark.parametrize(
    ("kind", "backend"),
    [
        ("hand.onnx", "onnxruntime"),
        ("exported.onnx", "onnxruntime"),
        ("exported.pt", "torchscript"),
    ],
)
def test_infer_matches_the_policy_and_reads_metadata(tmp_path, kind, backend):
    metadata = make_metadata(joint_dim=5, action_dim=3, image_size=(16, 24))
    if kind == "hand.onnx":
        path = write_onnx_policy(tmp_path / kind, metadata, OFFSET, image_gain=0.01)
    else:
        path = export_affine_policy(tmp_path / kind, metadata, OFFSET, image_gain=0.01)
    runtime = load_policy(path, device="cpu")
    assert runtime.metadata == metadata
    assert runtime.backend == backend
    assert "CPU" in runtime.device.upper()
    assert runtime.warm_up(2) > 0
    image, joint = _inputs(metadata)
    action = runtime.infer(image, joint)
    assert action.dtype == np.float32 and action.shape == (3,)
    np.testing.assert_allclose(action, expected_action(image, joint, OFFSET, 0.01), rtol=1e-5)
    chunk = runtime.infer_chunk(image, joint)  # a one-action policy's chunk is [1, A]
    assert chunk.dtype == np.float32 and chunk.shape == (1, 3)
    np.testing.assert_array_equal(chunk[0], action)


@pytest.mark.parametrize(("kind", "backend"), [("p.onnx", "onnxruntime"), ("p.pt", "torchscript")])
def test_infer_chunk_gives_the_policys_rows_in_order(tmp_path, kind, backend):
    metadata = make_metadata(joint_dim=5, action_dim=3, image_size=(16, 24), chunk_size=4)
    write = write_onnx_policy if backend == "onnxruntime" else write_torchscript_policy
    path = write(tmp_path / kind, metadata, offset=OFFSET, image_gain=0.01)
    runtime = load_policy(path, device="cpu")
    assert runtime.metadata == metadata and runtime.backend == backend
    assert runtime.warm_up(1) > 0
    image, joint = _inputs(metadata)
    chunk = runtime.infer_chunk(image, joint)
    assert chunk.dtype == np.float32 and chunk.shape == (4, 3)
    expected = expected_chunk(image, joint, OFFSET, 0.01, 4)
    np.testing.assert_allclose(chunk, expected, rtol=1e-5)
    np.testing.assert_allclose(np.diff(chunk, axis=0), np.tile(OFFSET, (3, 1)), atol=1e-4)
    with pytest.raises(PolicyRuntimeError, match=rf"{kind}: .*chunk_size 4\); use infer_chunk"):
        runtime.infer(image, joint)


@pytest.mark.parametrize(
    ("graph_chunk", "claimed_chunk", "message"),
    [
        (4, 1, r"graph 'action' is tensor\(float\) \['B', 4, 3\], but the metadata's "
               r"action_dim 3 needs tensor\(float\) \['B', 3\]"),
        (1, 4, r"graph 'action' is tensor\(float\) \['B', 3\], but the metadata's "
               r"chunk_size 4 and action_dim 3 needs tensor\(float\) \['B', 4, 3\]"),
        (4, 5, r"graph 'action' is tensor\(float\) \['B', 4, 3\], but the metadata's "
               r"chunk_size 5 and action_dim 3 needs tensor\(float\) \['B', 5, 3\]"),
    ],
)
def test_onnx_graph_with_another_chunk_shape_is_refused(
    tmp_path, graph_chunk, claimed_chunk, message
):
    graph = make_metadata(joint_dim=4, action_dim=3, image_size=(16, 16), chunk_size=graph_chunk)
    path = write_onnx_policy(tmp_path / "chunks.onnx", graph)
    replace_metadata(path, metadata_with(graph, chunk_size=claimed_chunk))
    with pytest.raises(PolicyRuntimeError, match=r"chunks\.onnx: " + message) as raised:
        load_policy(path, device="cpu")
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize(
    ("traced_chunk", "claimed_chunk", "message"),
    [
        (3, 4, r"shape \[1, 3, 3\] for one observation, but the metadata's chunk_size 4 and "
               r"action_dim 3 needs \[1, 4, 3\]"),
        (1, 4, r"shape \[1, 3\] for one observation, but the metadata's chunk_size 4"),
        (4, 1, r"shape \[1, 4, 3\] for one observation, but the metadata's action_dim 3 "
               r"needs \[1, 3\]"),
    ],
)
def test_torchscript_policy_with_another_chunk_shape_fails_its_warm_up(
    tmp_path, traced_chunk, claimed_chunk, message
):
    traced_for = make_metadata(joint_dim=4, action_dim=3, image_size=(16, 16),
                               chunk_size=traced_chunk)
    claimed = metadata_with(traced_for, chunk_size=claimed_chunk)
    path = write_torchscript_policy(tmp_path / "chunks.pt", traced_for, claimed)
    runtime = load_policy(path, device="cpu")  # TorchScript has no shapes to check up front
    with pytest.raises(PolicyRuntimeError, match=r"chunks\.pt: output 'action' has " + message):
        runtime.warm_up(1)
    image, joint = _inputs(runtime.metadata)
    with pytest.raises(PolicyRuntimeError, match=r"chunks\.pt: output 'action' has " + message):
        runtime.infer_chunk(image, joint)


def test_auto_device_falls_back_to_cpu_without_gpu(tmp_path):
    metadata = make_metadata()
    runtime = load_policy(write_onnx_policy(tmp_path / "p.onnx", metadata), device="auto")
    assert runtime.device.split(", ")[-1] == "CPUExecutionProvider"


def test_missing_metadata_is_refused(tmp_path):
    path = write_onnx_policy(tmp_path / "bare.onnx", make_metadata(), with_metadata=False)
    with pytest.raises(PolicyRuntimeError, match=r"bare\.onnx.*no 'lapo_ros' metadata"):
        load_policy(path)


def test_wrong_input_names_are_refused(tmp_path):
    path = write_onnx_policy(
        tmp_path / "names.onnx", make_metadata(), input_names=("pixels", "joint")
    )
    with pytest.raises(PolicyRuntimeError, match=r"names\.onnx.*inputs.*'image'"):
        load_policy(path)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        # the graph (4 joints in, 4 actions out, 16x16 images) and its metadata disagree
        ({"action_dim": 3}, r"graph 'action' is tensor\(float\) \['B', 4\].*action_dim 3"),
        (
            {"image_size": [24, 24]},
            r"graph 'image' is tensor\(uint8\) \['B', 9, 16, 16\].*image_size \[24, 24\]",
        ),
        (
            {"joint_dim": 5, "joint_names": [f"joint_{i}" for i in range(5)]},
            r"graph 'joint' is tensor\(float\) \['B', 4\].*joint_dim 5",
        ),
    ],
)
def test_graph_disagreeing_with_metadata_is_refused(tmp_path, changes, message):
    metadata = make_metadata(joint_dim=4, action_dim=4, image_size=(16, 16))
    path = write_onnx_policy(tmp_path / "p.onnx", metadata)
    replace_metadata(path, metadata_with(metadata, **changes))
    with pytest.raises(PolicyRuntimeError, match=r"p\.onnx: " + message) as raised:
        load_policy(path, device="cpu")
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "metadata 'lapo_ros' is not JSON"),
        ("[1, 2]", "is not a JSON object"),
        (dict(action_dim="4"), "action_dim must be a positive integer, got '4'"),
        (dict(joint_dim=-4), "joint_dim must be a positive integer, got -4"),
        (dict(action_dim=True), "action_dim must be a positive integer, got True"),
        (dict(image_size=[16, -16]), "image_size W must be a positive integer, got -16"),
        (dict(image_size=[16]), r"image_size must be \[H, W\]"),
        (dict(image_size="16x16"), r"image_size must be \[H, W\]"),
        (dict(image_size=[16.0, 16.0]), r"image_size must be \[H, W\]"),
        (dict(joint_names="joint_0"), "joint_names must be a list of joint names"),
        (dict(joint_names=[0, 1, 2, 3]), "joint_names must be a list of joint names"),
        (dict(joint_names=["a", "b", "c"]), "joint_names has 3 names but joint_dim is 4"),
        (
            dict(joint_names=["a", "b", "c", "a"]),
            r"joint_names: joint name\(s\) \['a'\] occur more than once",
        ),
        (
            dict(action_names=["joint_1", "joint_0", "joint_1", "joint_2"]),
            r"action_names: joint name\(s\) \['joint_1'\] occur more than once",
        ),
        (dict(action_names=["joint_0"]), "action_names has 1 names but action_dim is 4"),
        (dict(camera_order="left"), "camera_order must be a list of camera names"),
        (dict(rate_hz=-30), "rate_hz must be > 0, got -30"),
        (dict(training_run=[]), "training_run must be a JSON object"),
        (dict(joint_dim=None), "metadata lacks joint_dim"),
        (dict(format_version=2), "format_version 2"),
    ],
)
def test_malformed_metadata_is_refused_naming_file_and_key(tmp_path, text, message):
    metadata = make_metadata(joint_dim=4, action_dim=4, image_size=(16, 16))
    path = write_onnx_policy(tmp_path / "p.onnx", metadata)
    replace_metadata(path, text if isinstance(text, str) else metadata_with(metadata, **text))
    with pytest.raises(PolicyRuntimeError, match=r"p\.onnx: .*" + message) as raised:
        load_policy(path, device="cpu")
    assert "\n" not in str(raised.value)


def test_more_actions_than_joints_need_action_names(tmp_path):
    metadata = make_metadata(joint_dim=4, action_dim=4)
    path = write_onnx_policy(tmp_path / "p.onnx", metadata)
    replace_metadata(path, metadata_with(metadata, joint_dim=2, joint_names=["a", "b"]))
    with pytest.raises(PolicyRuntimeError, match="action_dim 4 > joint_dim 2 but no action_names"):
        load_policy(path, device="cpu")


def test_torchscript_policy_failing_on_its_metadata_sizes_is_one_clear_error(tmp_path):
    traced_for = make_metadata(joint_dim=4, action_dim=4, image_size=(16, 16))
    claimed = metadata_with(traced_for, joint_dim=3, joint_names=["a", "b", "c"], action_dim=3)
    path = write_torchscript_policy(tmp_path / "p.pt", traced_for, claimed)
    runtime = load_policy(path, device="cpu")  # TorchScript has no shapes to check up front
    with pytest.raises(PolicyRuntimeError, match=r"p\.pt: the policy fails on inputs") as raised:
        runtime.warm_up(1)
    assert "\n" not in str(raised.value) and "Traceback" not in str(raised.value)


def test_bad_files_and_settings_name_the_problem(tmp_path):
    with pytest.raises(PolicyRuntimeError, match="not found"):
        load_policy(tmp_path / "none.onnx")
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a model")
    with pytest.raises(PolicyRuntimeError, match=r"garbage\.onnx.*onnxruntime cannot load"):
        load_policy(garbage)
    with pytest.raises(PolicyRuntimeError, match="backend 'tensorrt' unknown"):
        resolve_backend(garbage, "tensorrt")
    with pytest.raises(PolicyRuntimeError, match="suffix '.bin'"):
        resolve_backend(tmp_path / "p.bin", "auto")
    with pytest.raises(PolicyRuntimeError, match="device 'tpu' unknown"):
        load_policy(garbage, device="tpu")
    assert resolve_backend(tmp_path / "p.bin", "torchscript") == "torchscript"


def test_onnx_backend_does_not_import_torch(tmp_path):
    path = write_onnx_policy(tmp_path / "p.onnx", make_metadata())
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from lapo_ros.robot.runtime import load_policy\n"
        f"runtime = load_policy({str(path)!r})\n"
        "runtime.warm_up(1)\n"
        "import lapo_ros.robot.node\n"
        "print('ok')\n"
    )
    root = str(Path(__file__).resolve().parents[1])
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": root},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("ok")
