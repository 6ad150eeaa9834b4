"""PolicyRuntime over real onnxruntime and TorchScript files with lapo_ros metadata."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from synthetic_policy import (
    expected_action,
    export_affine_policy,
    make_metadata,
    write_onnx_policy,
)

from lapo_ros.policy_runtime import PolicyRuntimeError, load_policy, resolve_backend

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


def test_metadata_disagreeing_with_output_size_is_refused(tmp_path):
    metadata = make_metadata(joint_dim=4, action_dim=4)
    path = write_onnx_policy(tmp_path / "p.onnx", metadata)
    # claim 3 actions in the metadata of a graph that outputs 4
    model_metadata = json.loads(metadata.to_json())
    model_metadata["action_dim"] = 3
    import onnx

    model = onnx.load(str(path))
    model.metadata_props[0].value = json.dumps(model_metadata)
    onnx.save(model, str(path))
    with pytest.raises(PolicyRuntimeError, match="action_dim 3"):
        load_policy(path).warm_up(1)


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
        "from lapo_ros.policy_runtime import load_policy\n"
        f"runtime = load_policy({str(path)!r})\n"
        "runtime.warm_up(1)\n"
        "import lapo_ros.policy_node\n"
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
