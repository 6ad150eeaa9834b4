"""One interface over the two policy-file runtimes: onnxruntime and TorchScript.

``load_policy(path, backend=, device=)`` opens an exported policy (see
``lapo_ros.common.policy_file``), reads and checks its metadata (and, for ONNX, the graph's
input and output shapes against it) and returns a ``PolicyRuntime`` whose
``infer_chunk(image, joint)`` maps uint8 [1,9,H,W] + float32 [1,J] to the action chunk
float32 [h,A] (h = the metadata's ``chunk_size``; [1,A] for a one-action policy) and, for
one-action policies only, ``infer`` to float32 [A]. onnxruntime is the default; torch is
imported only for the TorchScript backend, so the policy node runs on machines without
torch.
"""

from __future__ import annotations

import ctypes
import time
import warnings
from abc import ABC, abstractmethod
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
DEVICES = ("auto", "cuda", "cpu")
_TORCHSCRIPT_SUFFIXES = (".pt", ".pth", ".ts", ".torchscript")


class PolicyRuntimeError(RuntimeError):
    """A policy file that cannot be loaded or run; the message names the file."""


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
    """An ``.onnx`` policy in onnxruntime: CUDA provider first (when asked and present), CPU."""

    backend = "onnxruntime"

    def __init__(self, path: Path, device: str = "auto"):
        import onnxruntime

        available = onnxruntime.get_available_providers()
        providers = ["CPUExecutionProvider"]
        cuda_built = "CUDAExecutionProvider" in available
        if (device == "auto" and cuda_built and _cuda_driver_present()) or (
            device == "cuda" and cuda_built
        ):
            providers.insert(0, "CUDAExecutionProvider")
        elif device == "cuda":
            raise PolicyRuntimeError(
                f"{path}: device 'cuda' asked, but this onnxruntime offers only {available}"
            )
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # fallbacks are reported through ``device``
        try:
            session = onnxruntime.InferenceSession(
                str(path), sess_options=options, providers=providers
            )
        except Exception as error:  # onnxruntime raises its own unexported error types
            raise PolicyRuntimeError(f"{path}: onnxruntime cannot load it: {error}") from error
        if device == "cuda" and "CUDAExecutionProvider" not in session.get_providers():
            raise PolicyRuntimeError(
                f"{path}: device 'cuda' asked, but the CUDA provider failed to start "
                f"(running providers: {session.get_providers()})"
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

    @property
    def device(self) -> str:
        return ", ".join(self._session.get_providers())

    def infer_batch(self, image: np.ndarray, joint: np.ndarray) -> np.ndarray:
        feeds = {INPUT_IMAGE: image, INPUT_JOINT: joint.astype(np.float32, copy=False)}
        (action,) = self._session.run(self._outputs, feeds)
        return action


class TorchScriptPolicy(PolicyRuntime):
    """A TorchScript policy (metadata in the extra file ``lapo_ros``): cuda first, then cpu."""

    backend = "torchscript"

    def __init__(self, path: Path, device: str = "auto"):
        import torch

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


def load_policy(path: str | Path, backend: str = "auto", device: str = "auto") -> PolicyRuntime:
    """Open an exported policy file and check its metadata; see the module docstring."""
    path = Path(path)
    if device not in DEVICES:
        raise PolicyRuntimeError(f"device {device!r} unknown; use one of {', '.join(DEVICES)}")
    if not path.is_file():
        raise PolicyRuntimeError(f"{path}: policy file not found")
    if resolve_backend(path, backend) == "onnxruntime":
        return OnnxPolicy(path, device)
    return TorchScriptPolicy(path, device)


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
