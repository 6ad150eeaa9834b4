"""PolicyRuntime over real onnxruntime and TorchScript files with lapo_ros metadata."""

from __future__ import annotations

import os
import re
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

from lapo_ros.robot import runtime as runtime_module
from lapo_ros.robot.runtime import (
    CPU,
    CUDA,
    TENSORRT,
    OnnxSettings,
    PolicyRuntimeError,
    load_policy,
    resolve_backend,
    tensorrt_cache_folder,
)

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


def test_auto_device_falls_back_to_cpu_without_gpu(tmp_path, monkeypatch):
    metadata = make_metadata()
    path = write_onnx_policy(tmp_path / "p.onnx", metadata)
    runtime = load_policy(path, device="auto")  # whatever this machine has: CPU last
    assert runtime.device.rstrip(")").endswith(CPU)
    monkeypatch.setattr(runtime_module, "_cuda_driver_present", lambda: False)
    runtime = load_policy(path, device="auto")
    assert runtime.device == CPU  # plain session.run: no IOBinding on the CPU
    image, joint = _inputs(metadata)
    expected = expected_action(image, joint, np.zeros(4, np.float32), 0.0)
    np.testing.assert_array_equal(runtime.infer(image, joint), expected)


class FakeOnnxruntime:
    """What ``_first_provider`` asks of onnxruntime: the providers this build offers."""

    def __init__(self, providers):
        self.providers = providers

    def get_available_providers(self):
        return list(self.providers)


ALL_PROVIDERS = [TENSORRT, CUDA, CPU]


def fake_machine(monkeypatch, offered, driver: bool, broken_libraries: set,
                 error: str = "missing") -> FakeOnnxruntime:
    """An onnxruntime offering ``offered`` on a machine with (or without) the NVIDIA driver,
    where the providers in ``broken_libraries`` fail to load with ``error``."""
    monkeypatch.setattr(runtime_module, "_cuda_driver_present", lambda: driver)
    monkeypatch.setattr(runtime_module, "_provider_library_error",
                        lambda _, provider: error if provider in broken_libraries else None)
    return FakeOnnxruntime(offered)


@pytest.mark.parametrize(
    ("offered", "driver", "broken_libraries", "device", "first"),
    [
        (ALL_PROVIDERS, True, set(), "auto", TENSORRT),
        (ALL_PROVIDERS, True, {TENSORRT}, "auto", CUDA),  # e.g. no libnvinfer
        (ALL_PROVIDERS, True, {TENSORRT, CUDA}, "auto", CPU),  # e.g. no cuDNN
        (ALL_PROVIDERS, False, set(), "auto", CPU),  # onnxruntime-gpu on a machine without GPU
        ([CUDA, CPU], True, set(), "auto", CUDA),
        ([CPU], True, set(), "auto", CPU),
        (ALL_PROVIDERS, True, {TENSORRT}, "cuda", CUDA),
        (ALL_PROVIDERS, True, set(), "tensorrt", TENSORRT),
        (ALL_PROVIDERS, True, {TENSORRT, CUDA}, "cpu", CPU),
    ],
)
def test_provider_choice(monkeypatch, offered, driver, broken_libraries, device, first):
    onnxruntime = fake_machine(monkeypatch, offered, driver, broken_libraries)
    assert runtime_module._first_provider(onnxruntime, Path("p.onnx"), device) == first


@pytest.mark.parametrize(
    ("offered", "driver", "broken_libraries", "device", "reason"),
    [
        ([CUDA, CPU], True, set(), "tensorrt", f"this onnxruntime has no {TENSORRT}"),
        ([CPU], True, set(), "cuda", f"this onnxruntime has no {CUDA}"),
        (ALL_PROVIDERS, False, set(), "cuda", r"the NVIDIA driver \(libcuda.so.1\) does not load"),
        (ALL_PROVIDERS, True, {TENSORRT}, "tensorrt", r"libnvinfer.so.10 missing"),
    ],
)
def test_asked_gpu_provider_that_cannot_start_is_one_clear_error(
    monkeypatch, offered, driver, broken_libraries, device, reason
):
    onnxruntime = fake_machine(monkeypatch, offered, driver, broken_libraries,
                               "libnvinfer.so.10 missing")
    with pytest.raises(PolicyRuntimeError) as raised:
        runtime_module._first_provider(onnxruntime, Path("models/p.onnx"), device)
    message = str(raised.value)
    assert re.fullmatch(
        rf"models/p\.onnx: device '{device}' asked, but {reason}; this onnxruntime offers "
        + re.escape(str(offered)),
        message,
    ), message


@pytest.mark.parametrize("device", ["cuda", "tensorrt"])
def test_asked_gpu_provider_without_a_driver_refuses_the_real_file(tmp_path, monkeypatch, device):
    monkeypatch.setattr(runtime_module, "_cuda_driver_present", lambda: False)
    path = write_onnx_policy(tmp_path / "p.onnx", make_metadata())
    with pytest.raises(PolicyRuntimeError, match=rf"p\.onnx: device '{device}' asked, .*"
                       r"driver.*this onnxruntime offers \[.*'CPUExecutionProvider'\]") as raised:
        load_policy(path, device=device)
    assert "\n" not in str(raised.value)


def _tensorrt_starts_here() -> bool:
    import onnxruntime

    return runtime_module._gpu_provider_problem(onnxruntime, TENSORRT) is None


@pytest.mark.skipif(_tensorrt_starts_here(), reason="TensorRT really starts on this machine")
def test_provider_that_falls_back_inside_onnxruntime_is_caught(tmp_path, monkeypatch):
    """onnxruntime replaces a provider that fails to start by the next ones, silently but for
    its log: an asked provider is checked in the session, ``auto`` reports what runs."""
    monkeypatch.setattr(runtime_module, "_gpu_provider_problem", lambda *_: None)
    metadata = make_metadata()
    path = write_onnx_policy(tmp_path / "p.onnx", metadata)
    settings = OnnxSettings(tensorrt_cache_path=str(tmp_path / "engines"))
    with pytest.raises(PolicyRuntimeError, match=rf"p\.onnx: device 'tensorrt' asked, but "
                       rf"{TENSORRT} failed to start \(running \[.*this onnxruntime offers"):
        load_policy(path, device="tensorrt", onnx=settings)
    assert tensorrt_cache_folder(path, settings).is_dir()  # made before the session
    runtime = load_policy(path, device="auto", onnx=settings)
    assert not runtime.device.startswith(TENSORRT)  # what runs, not what was tried
    image, joint = _inputs(metadata)
    assert runtime.infer(image, joint).shape == (4,)


def test_tensorrt_cache_is_per_model_content_and_precision(tmp_path):
    path = write_onnx_policy(tmp_path / "policy.onnx", make_metadata(), OFFSET[:1].repeat(4))
    default = tensorrt_cache_folder(path, OnnxSettings())
    assert default.parent == tmp_path / "policy.tensorrt_cache"
    assert default.name.endswith("_fp32")
    fp16 = tensorrt_cache_folder(path, OnnxSettings(tensorrt_fp16=True))
    assert fp16.parent == default.parent and fp16.name.endswith("_fp16") and fp16 != default
    configured = tensorrt_cache_folder(path, OnnxSettings(tensorrt_cache_path="/var/engines"))
    assert configured == Path("/var/engines") / default.name
    write_onnx_policy(path, make_metadata(), OFFSET[:1].repeat(4) + 1)  # re-exported weights
    assert tensorrt_cache_folder(path, OnnxSettings()) != default


def test_tensorrt_options_and_fallback_order(tmp_path):
    path = write_onnx_policy(tmp_path / "p.onnx", make_metadata())
    settings = OnnxSettings(tensorrt_cache_path=str(tmp_path / "engines"))
    (tensorrt, options), cuda, cpu = runtime_module._providers(TENSORRT, path, settings)
    assert (tensorrt, cuda, cpu) == (TENSORRT, CUDA, CPU)
    assert options == {
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": str(tensorrt_cache_folder(path, settings)),
        "trt_fp16_enable": False,  # actions match the fp32 model unless asked
        "trt_max_workspace_size": 2 << 30,
    }
    assert runtime_module._providers(CUDA, path, settings) == [CUDA, CPU]
    assert runtime_module._providers(CPU, path, settings) == [CPU]


def test_unwritable_tensorrt_cache_names_the_folder_and_parameter(tmp_path):
    path = write_onnx_policy(tmp_path / "p.onnx", make_metadata())
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    settings = OnnxSettings(tensorrt_cache_path=str(blocker))
    with pytest.raises(PolicyRuntimeError, match=r"p\.onnx: cannot create the TensorRT engine "
                       r"cache .*a_file/.*; set tensorrt_cache_path to a writable folder"):
        runtime_module._providers(TENSORRT, path, settings)


def test_provider_library_check_names_what_does_not_load():
    import onnxruntime

    if TENSORRT not in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has no TensorRT provider")
    error = runtime_module._provider_library_error(onnxruntime, TENSORRT)
    if error is not None:  # a machine without TensorRT: the library and what it misses
        assert re.fullmatch(r"libonnxruntime_providers_tensorrt\.so does not load \(.+\)", error)


@pytest.mark.parametrize(
    ("running", "settings", "bound", "text"),
    [
        ([CPU], OnnxSettings(), False, CPU),
        ([CUDA, CPU], OnnxSettings(), True, f"{CUDA} + IOBinding (fallback: {CPU})"),
        ([CUDA, CPU], OnnxSettings(io_binding=False), False, f"{CUDA} (fallback: {CPU})"),
        (
            [TENSORRT, CUDA, CPU],
            OnnxSettings(tensorrt_fp16=True),
            True,
            f"{TENSORRT} fp16 + IOBinding (fallback: {CUDA}, {CPU})",
        ),
    ],
)
def test_device_says_which_provider_runs(running, settings, bound, text):
    assert runtime_module._describe(running, settings, bound) == text


def test_io_binding_gives_what_session_run_gives(tmp_path):
    """The IOBinding path (CUDA and TensorRT on the robot), run here with host memory."""
    metadata = make_metadata(joint_dim=5, action_dim=3, image_size=(16, 24), chunk_size=2)
    path = write_onnx_policy(tmp_path / "p.onnx", metadata, OFFSET, image_gain=0.01)
    runtime = load_policy(path, device="cpu")
    binding = runtime_module._IOBinding(runtime._session, "cpu")
    first_inputs, second_inputs = _inputs(metadata, seed=1), _inputs(metadata, seed=2)
    first = binding.run(*first_inputs)
    second = binding.run(*second_inputs)
    for action, inputs in ((first, first_inputs), (second, second_inputs)):
        assert action.dtype == np.float32 and action.shape == (1, 2, 3)
        np.testing.assert_array_equal(action, runtime.infer_batch(*inputs))  # not overwritten
    image, joint = _inputs(metadata, seed=3)
    batch = binding.run(np.repeat(image, 3, axis=0), np.repeat(joint, 3, axis=0))
    np.testing.assert_array_equal(batch, np.repeat(runtime.infer_batch(image, joint), 3, axis=0))
    with pytest.raises(Exception, match="input data type"):  # as session.run: no silent cast
        binding.run(image.astype(np.float32), joint)


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
    with pytest.raises(PolicyRuntimeError, match="device 'tpu' unknown; use one of auto, "
                       "tensorrt, cuda, cpu"):
        load_policy(garbage, device="tpu")
    torchscript = write_torchscript_policy(tmp_path / "p.pt", make_metadata())
    with pytest.raises(PolicyRuntimeError, match=r"p\.pt: device 'tensorrt' is an onnxruntime "
                       "execution provider; the TorchScript backend runs on cuda or cpu"):
        load_policy(torchscript, device="tensorrt")
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
