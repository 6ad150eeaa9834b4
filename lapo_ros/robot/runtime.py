"""One interface over the two policy-file runtimes: onnxruntime and TorchScript.

``load_policy(path, backend=, device=)`` opens an exported policy (see
``lapo_ros.common.policy_file``), reads and checks its metadata (and, for ONNX, the graph's
input and output shapes against it) and returns a ``PolicyRuntime`` whose
``infer_chunk(image, joint)`` maps uint8 [1,9,H,W] + float32 [1,J] to the action chunk
float32 [h,A] (h = the metadata's ``chunk_size``; [1,A] for a one-action policy) and, for
one-action policies only, ``infer`` to float32 [A]. onnxruntime is the default; torch is
imported only for the TorchScript backend, so the policy node runs on machines without
torch.

onnxruntime runs the model on the device's execution provider: ``auto`` takes TensorRT when
the NVIDIA driver and TensorRT's libraries load, else CUDA when the driver and CUDA's load,
else the CPU; ``tensorrt`` and ``cuda`` fail (naming the file and what this onnxruntime
offers) rather than fall back to the CPU, and ``device`` says which provider runs. On
TensorRT and CUDA, inputs and the action move through IOBinding (``OnnxSettings``).
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import io
import time
import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lapo_ros.common.policy_file import (
    INPUT_IMAGE,
    INPUT_JOINT,
    METADATA_KEY,
    OUTPUT_ACTION,
    PolicyMetadata,
    PolicyMetadataError,
)

BACKENDS = ("auto", "onnxruntime", "torchscript")
DEVICES = ("auto", "tensorrt", "cuda", "cpu")
_TORCHSCRIPT_SUFFIXES = (".pt", ".pth", ".ts", ".torchscript")

TENSORRT = "TensorrtExecutionProvider"
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
_FALLBACK_ORDER = (TENSORRT, CUDA, CPU)  # a provider passes the nodes it cannot take on
_DEVICE_PROVIDERS = {"tensorrt": TENSORRT, "cuda": CUDA, "cpu": CPU}
_PROVIDER_LIBRARIES = {
    TENSORRT: "libonnxruntime_providers_tensorrt.so",
    CUDA: "libonnxruntime_providers_cuda.so",
}


class PolicyRuntimeError(RuntimeError):
    """A policy file that cannot be loaded or run; the message names the file."""


@dataclass(frozen=True)
class OnnxSettings:
    """onnxruntime choices beyond the device; the TorchScript backend has none of them.

    ``tensorrt_cache_path``: engine cache folder ("": ``<model stem>.tensorrt_cache`` next to
    the model), one subfolder per model content and precision (``tensorrt_cache_folder``);
    ``tensorrt_fp16``: fp16 kernels (faster; actions then differ from fp32);
    ``tensorrt_workspace_bytes``: TensorRT's ``trt_max_workspace_size``;
    ``io_binding``: on TensorRT and CUDA, bind the numpy inputs and a device output, and copy
    the action to the host explicitly (``session.run`` otherwise).
    """

    tensorrt_cache_path: str = ""
    tensorrt_fp16: bool = False
    tensorrt_workspace_bytes: int = 2 << 30
    io_binding: bool = True


class PolicyRuntime(ABC):
    """A loaded policy: ``metadata``, where it runs (``device``), ``infer_chunk``/``infer``."""

    def __init__(self, path: Path, metadata: PolicyMetadata):
        self.path = path
        self.metadata = metadata

    @property
    @abstractmethod
    def backend(self) -> str:
        """``onnxruntime`` or ``torchscript``."""

    @property
    @abstractmethod
    def device(self) -> str:
        """What really runs the model: onnxruntime providers or the torch device."""

    @abstractmethod
    def infer_batch(self, image: np.ndarray, joint: np.ndarray) -> np.ndarray:
        """uint8 [B,9,H,W] and float32 [B,J] in robot units -> float32 [B,A] (chunk_size 1)
        or [B,h,A] (chunk_size h > 1) in robot units."""

    def infer_chunk(self, image: np.ndarray, joint: np.ndarray) -> np.ndarray:
        """uint8 [1,9,H,W] and float32 [1,J] in robot units -> the action chunk float32 [h,A]
        in robot units, row i for i control periods after the observation ([1,A] when
        chunk_size is 1). An output of another shape is a ``PolicyRuntimeError``."""
        action = self.infer_batch(image, joint)
        expected = (1, *self.metadata.action_shape)
        if action.shape != expected:
            raise PolicyRuntimeError(self._shape_error(action.shape, expected))
        return action.reshape(self.metadata.chunk_size, self.metadata.action_dim)

    def infer(self, image: np.ndarray, joint: np.ndarray) -> np.ndarray:
        """uint8 [1,9,H,W] and float32 [1,J] in robot units -> float32 [A] in robot units.

        Only for chunk_size 1: a chunk policy's one action depends on how its chunks are
        played (``lapo_ros.robot.chunk_execution``), so it is a ``PolicyRuntimeError``.
        """
        if self.metadata.chunk_size != 1:
            raise PolicyRuntimeError(
                f"{self.path}: the policy outputs action chunks (chunk_size "
                f"{self.metadata.chunk_size}); use infer_chunk"
            )
        return self.infer_chunk(image, joint)[0]

    def warm_up(self, iterations: int) -> float:
        """Run ``iterations`` passes on zero inputs (allocations, kernel choice, CUDA init).

        Returns the time of the last pass in seconds, and checks the output size; a pass
        that fails (inputs of the metadata's sizes the model cannot take) is a
        ``PolicyRuntimeError``.
        """
        height, width = self.metadata.image_size
        image = np.zeros((1, 3 * len(self.metadata.camera_order), height, width), np.uint8)
        joint = np.zeros((1, self.metadata.joint_dim), np.float32)
        elapsed = 0.0
        for _ in range(max(1, iterations)):
            start = time.perf_counter()
            try:
                action = self.infer_batch(image, joint)
            except Exception as error:  # onnxruntime and torch raise their own types
                raise PolicyRuntimeError(
                    f"{self.path}: the policy fails on inputs of the sizes its metadata gives "
                    f"({INPUT_IMAGE} {list(image.shape)}, {INPUT_JOINT} {list(joint.shape)}): "
                    f"{last_line(error)}"
                ) from error
            elapsed = time.perf_counter() - start
        expected = (1, *self.metadata.action_shape)
        if action.shape != expected:
            raise PolicyRuntimeError(self._shape_error(action.shape, expected))
        return elapsed

    def _shape_error(self, shape: tuple[int, ...], expected: tuple[int, ...]) -> str:
        return (
            f"{self.path}: output {OUTPUT_ACTION!r} has shape {list(shape)} for one "
            f"observation, but the metadata's {_action_claim(self.metadata)} needs "
            f"{list(expected)}"
        )


class OnnxPolicy(PolicyRuntime):
    """An ``.onnx`` policy in onnxruntime on TensorRT, CUDA or the CPU (see the module doc)."""

    backend = "onnxruntime"

    def __init__(self, path: Path, device: str = "auto", settings: OnnxSettings = OnnxSettings()):
        import onnxruntime

        first = _first_provider(onnxruntime, path, device)
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # fallbacks are reported through ``device``
        try:
            session = onnxruntime.InferenceSession(
                str(path), sess_options=options, providers=_providers(first, path, settings)
            )
        except Exception as error:  # onnxruntime raises its own unexported error types
            raise PolicyRuntimeError(f"{path}: onnxruntime cannot load it: {error}") from error
        running = session.get_providers()
        if device != "auto" and running[0] != first:  # onnxruntime fell back on its own
            raise PolicyRuntimeError(
                f"{path}: device {device!r} asked, but {first} failed to start (running "
                f"{running}; this onnxruntime offers {onnxruntime.get_available_providers()})"
            )
        text = session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        super().__init__(path, _parse_metadata(text, path))
        _check_names(
            path,
            [i.name for i in session.get_inputs()],
            [o.name for o in session.get_outputs()],
        )
        _check_graph(path, [*session.get_inputs(), *session.get_outputs()], self.metadata)
        self._session = session
        self._outputs = [OUTPUT_ACTION]
        bound = settings.io_binding and running[0] != CPU
        self._binding = _IOBinding(session) if bound else None
        self._description = _describe(running, settings, bound)

    @property
    def device(self) -> str:
        """The provider that runs the model, e.g. ``CPUExecutionProvider`` or
        ``TensorrtExecutionProvider fp32 + IOBinding (fallback: CUDAExecutionProvider,
        CPUExecutionProvider)``: the providers after it take the nodes it cannot."""
        return self._description

    def infer_batch(self, image: np.ndarray, joint: np.ndarray) -> np.ndarray:
        joint = joint.astype(np.float32, copy=False)
        if self._binding is not None:
            return self._binding.run(image, joint)
        (action,) = self._session.run(self._outputs, {INPUT_IMAGE: image, INPUT_JOINT: joint})
        return action


class _IOBinding:
    """numpy in, numpy out through an onnxruntime IOBinding: each call binds the numpy inputs
    (copied to ``device`` inside the run) and the action, written to ``device`` memory ('cuda'
    for CUDA and TensorRT), is copied to the host once. One caller at a time."""

    def __init__(self, session, device: str = "cuda"):
        self._session = session
        self._device = device
        self._binding = session.io_binding()

    def run(self, image: np.ndarray, joint: np.ndarray) -> np.ndarray:
        self._binding.bind_cpu_input(INPUT_IMAGE, np.ascontiguousarray(image))
        self._binding.bind_cpu_input(INPUT_JOINT, np.ascontiguousarray(joint))
        # bound anew: the last run's output would pin its batch size
        self._binding.bind_output(OUTPUT_ACTION, self._device)
        self._session.run_with_iobinding(self._binding)
        return self._binding.copy_outputs_to_cpu()[0]


class TorchScriptPolicy(PolicyRuntime):
    """A TorchScript policy (metadata in the extra file ``lapo_ros``): cuda first, then cpu."""

    backend = "torchscript"

    def __init__(self, path: Path, device: str = "auto"):
        import torch

        if device == "tensorrt":
            raise PolicyRuntimeError(
                f"{path}: device 'tensorrt' is an onnxruntime execution provider; the "
                "TorchScript backend runs on cuda or cpu"
            )
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        elif device == "cuda" and not torch.cuda.is_available():
            raise PolicyRuntimeError(f"{path}: device 'cuda' asked, but torch sees no CUDA device")
        extra_files = {METADATA_KEY: ""}
        try:
            with warnings.catch_warnings():  # TorchScript is the contract's format
                warnings.simplefilter("ignore", FutureWarning)
                module = torch.jit.load(str(path), map_location=device, _extra_files=extra_files)
        except Exception as error:  # torch raises RuntimeError/ValueError/zip errors
            raise PolicyRuntimeError(f"{path}: TorchScript cannot load it: {error}") from error
        text = extra_files[METADATA_KEY]
        if isinstance(text, bytes):
            try:
                text = text.decode("utf-8")
            except UnicodeDecodeError as error:
                raise PolicyRuntimeError(
                    f"{path}: metadata {METADATA_KEY!r} is not UTF-8 text: {error}"
                ) from error
        super().__init__(path, _parse_metadata(text or None, path))
        self._torch = torch
        self._module = module.eval()
        self._device = torch.device(device)

    @property
    def device(self) -> str:
        return str(self._device)

    def infer_batch(self, image: np.ndarray, joint: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            action = self._module(
                torch.from_numpy(image).to(self._device, non_blocking=True),
                torch.from_numpy(joint).to(self._device, non_blocking=True).float(),
            )
        return action.detach().to("cpu").float().numpy()


def resolve_backend(path: Path, backend: str) -> str:
    """``auto`` -> ``onnxruntime`` for ``.onnx``, ``torchscript`` for ``.pt``-like files."""
    if backend not in BACKENDS:
        raise PolicyRuntimeError(f"backend {backend!r} unknown; use one of {', '.join(BACKENDS)}")
    if backend != "auto":
        return backend
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return "onnxruntime"
    if suffix in _TORCHSCRIPT_SUFFIXES:
        return "torchscript"
    raise PolicyRuntimeError(
        f"{path}: cannot tell the backend from suffix {suffix!r}; name the file .onnx or .pt, "
        "or set backend to onnxruntime or torchscript"
    )


def load_policy(
    path: str | Path,
    backend: str = "auto",
    device: str = "auto",
    onnx: OnnxSettings = OnnxSettings(),
) -> PolicyRuntime:
    """Open an exported policy file and check its metadata; see the module docstring.
    ``onnx`` applies to the onnxruntime backend only."""
    path = Path(path)
    if device not in DEVICES:
        raise PolicyRuntimeError(f"device {device!r} unknown; use one of {', '.join(DEVICES)}")
    if not path.is_file():
        raise PolicyRuntimeError(f"{path}: policy file not found")
    if resolve_backend(path, backend) == "onnxruntime":
        return OnnxPolicy(path, device, onnx)
    return TorchScriptPolicy(path, device)


def tensorrt_cache_folder(path: Path, settings: OnnxSettings) -> Path:
    """Where TensorRT keeps the engines of the model at ``path``: a subfolder per model
    content and precision, so a re-exported policy of the same name (the same graph, so the
    same engine name to onnxruntime) never runs an engine built from old weights."""
    root = Path(settings.tensorrt_cache_path or path.parent / f"{path.stem}.tensorrt_cache")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    return root / f"{digest}_{'fp16' if settings.tensorrt_fp16 else 'fp32'}"


def _first_provider(onnxruntime, path: Path, device: str) -> str:
    """The provider ``device`` asks for; ``auto``: TensorRT, else CUDA, else the CPU,
    whichever first can start. An asked GPU provider that cannot is a ``PolicyRuntimeError``."""
    if device == "cpu":
        return CPU
    for provider in (TENSORRT, CUDA) if device == "auto" else (_DEVICE_PROVIDERS[device],):
        problem = _gpu_provider_problem(onnxruntime, provider)
        if problem is None:
            return provider
        if device != "auto":
            raise PolicyRuntimeError(
                f"{path}: device {device!r} asked, but {problem}; this onnxruntime offers "
                f"{onnxruntime.get_available_providers()}"
            )
    return CPU


def _gpu_provider_problem(onnxruntime, provider: str) -> str | None:
    """Why ``provider`` cannot start here (not built into this onnxruntime, no NVIDIA driver,
    its library or the CUDA/cuDNN/TensorRT libraries it needs do not load), or None."""
    if provider not in onnxruntime.get_available_providers():
        return f"this onnxruntime has no {provider}"
    if not _cuda_driver_present():
        return "the NVIDIA driver (libcuda.so.1) does not load"
    return _provider_library_error(onnxruntime, provider)


def _provider_library_error(onnxruntime, provider: str) -> str | None:
    """None when onnxruntime's library for ``provider`` loads as onnxruntime loads it (after
    its shared provider bridge, with CUDA and cuDNN from the system or NVIDIA's pip
    packages), else why not, e.g. the TensorRT library it misses."""
    preload = getattr(onnxruntime, "preload_dlls", None)  # onnxruntime >= 1.21
    if preload is not None:
        with contextlib.redirect_stdout(io.StringIO()):  # it prints what it does not find
            preload()
    folder = Path(onnxruntime.__file__).parent / "capi"
    library = _PROVIDER_LIBRARIES[provider]
    try:
        ctypes.CDLL(str(folder / "libonnxruntime_providers_shared.so"), mode=ctypes.RTLD_GLOBAL)
        ctypes.CDLL(str(folder / library))
    except OSError as error:
        return f"{library} does not load ({error})"
    return None


def _providers(first: str, path: Path, settings: OnnxSettings) -> list:
    """``first`` and the providers after it that take the nodes it cannot (TensorRT, CUDA,
    CPU), TensorRT with its options: an engine cache, fp16 only when asked, a workspace."""
    providers: list = list(_FALLBACK_ORDER[_FALLBACK_ORDER.index(first) :])
    if first == TENSORRT:
        cache = tensorrt_cache_folder(path, settings)
        try:
            cache.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise PolicyRuntimeError(
                f"{path}: cannot create the TensorRT engine cache {cache} ({error.strerror}); "
                "set tensorrt_cache_path to a writable folder"
            ) from error
        options = {
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(cache),
            "trt_fp16_enable": settings.tensorrt_fp16,
            "trt_max_workspace_size": settings.tensorrt_workspace_bytes,
        }
        providers[0] = (TENSORRT, options)
    return providers


def _describe(running: list[str], settings: OnnxSettings, bound: bool) -> str:
    """``device``'s text: the running provider, its precision and copies, its fallbacks."""
    text = running[0]
    if running[0] == TENSORRT:
        text += " fp16" if settings.tensorrt_fp16 else " fp32"
    if bound:
        text += " + IOBinding"
    if len(running) > 1:
        text += f" (fallback: {', '.join(running[1:])})"
    return text


def _cuda_driver_present() -> bool:
    """Whether the NVIDIA driver library loads (onnxruntime-gpu lists CUDA even without it)."""
    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    return True


def _parse_metadata(text: str | None, path: Path) -> PolicyMetadata:
    if text is None:
        raise PolicyRuntimeError(
            f"{path}: no {METADATA_KEY!r} metadata; export policies with the lapo_ros exporter"
        )
    try:
        return PolicyMetadata.from_json(text, source=str(path))
    except PolicyMetadataError as error:
        raise PolicyRuntimeError(str(error)) from error


def last_line(error: BaseException) -> str:
    """The last non-empty line of an error's message (TorchScript errors carry their own
    multi-line trace before it)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


def _check_names(path: Path, inputs: list[str], outputs: list[str]) -> None:
    if sorted(inputs) != sorted([INPUT_IMAGE, INPUT_JOINT]) or OUTPUT_ACTION not in outputs:
        raise PolicyRuntimeError(
            f"{path}: inputs {inputs} and outputs {outputs}; a lapo_ros policy has inputs "
            f"{INPUT_IMAGE!r}, {INPUT_JOINT!r} and output {OUTPUT_ACTION!r}"
        )


def _action_claim(metadata: PolicyMetadata) -> str:
    """What the metadata says of the ``action`` output, for error messages."""
    if metadata.chunk_size == 1:
        return f"action_dim {metadata.action_dim}"
    return f"chunk_size {metadata.chunk_size} and action_dim {metadata.action_dim}"


def _check_graph(path: Path, values: list, metadata: PolicyMetadata) -> None:
    """The ONNX graph's ``image``/``joint``/``action`` (onnxruntime NodeArgs in ``values``)
    must have the element types and the fixed sizes that ``metadata`` gives."""
    cameras = len(metadata.camera_order)
    expected = {
        INPUT_IMAGE: (
            "tensor(uint8)",
            [3 * cameras, *metadata.image_size],
            f"image_size {metadata.image_size} of {cameras} RGB cameras",
        ),
        INPUT_JOINT: ("tensor(float)", [metadata.joint_dim], f"joint_dim {metadata.joint_dim}"),
        OUTPUT_ACTION: ("tensor(float)", list(metadata.action_shape), _action_claim(metadata)),
    }
    by_name = {value.name: value for value in values}
    for name, (element_type, sizes, claim) in expected.items():
        graph = by_name[name]
        shape = list(graph.shape)
        fits = len(shape) == 1 + len(sizes) and all(
            not isinstance(found, int) or found == wanted
            for found, wanted in zip(shape[1:], sizes, strict=True)
        )
        if graph.type != element_type or not fits:
            raise PolicyRuntimeError(
                f"{path}: graph {name!r} is {graph.type} {shape}, but the metadata's {claim} "
                f"needs {element_type} {['B', *sizes]}"
            )
