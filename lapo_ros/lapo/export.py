"""Write and read self-describing policy files (``.onnx`` / TorchScript ``.pt``).

``export_policy`` turns any ``nn.Module`` with ``forward(image uint8 [B,9,H,W],
joint float32 [B,J]) -> action float32 [B,A]`` into a policy file that carries its
``PolicyMetadata``; it verifies the file against the eager module before the file
appears. ``read_policy_metadata`` reads that metadata back without running the model
(and without torch: ONNX through ``onnx``, TorchScript as the zip archive it is).
torch and onnx are imported inside the functions so importing this module is cheap.
"""

from __future__ import annotations

import os
import warnings
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from lapo_ros.common.files import atomic_path
from lapo_ros.common.policy_file import (
    INPUT_IMAGE,
    INPUT_JOINT,
    METADATA_KEY,
    OUTPUT_ACTION,
    PolicyMetadata,
    PolicyMetadataError,
)

if TYPE_CHECKING:
    import torch

ONNX_SUFFIX = ".onnx"
TORCHSCRIPT_SUFFIX = ".pt"
POLICY_SUFFIXES = (ONNX_SUFFIX, TORCHSCRIPT_SUFFIX)
DEFAULT_TOLERANCE = 1e-4
ONNX_OPSET = 18
VERIFY_BATCH = 3  # differs from the export batch, so the check also covers the dynamic axis


class PolicyExportError(RuntimeError):
    """A policy that could not be exported, or whose exported file disagrees with it."""


def policy_format(path: str | os.PathLike) -> str:
    """'onnx' or 'torchscript' from the file suffix; PolicyExportError otherwise."""
    suffix = Path(path).suffix.lower()
    if suffix == ONNX_SUFFIX:
        return "onnx"
    if suffix == TORCHSCRIPT_SUFFIX:
        return "torchscript"
    raise PolicyExportError(
        f"{path}: unknown policy file type {suffix!r}, use {' or '.join(POLICY_SUFFIXES)}"
    )


def random_policy_inputs(
    metadata: PolicyMetadata, batch_size: int, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random (image uint8 [B,9,H,W], joint float32 [B,J]) matching ``metadata``."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    height, width = metadata.image_size
    channels = 3 * len(metadata.camera_order)
    image = torch.randint(
        0, 256, (batch_size, channels, height, width), dtype=torch.uint8, generator=generator
    )
    joint = torch.randn(batch_size, metadata.joint_dim, generator=generator)
    return image, joint


def export_policy(
    module: torch.nn.Module,
    metadata: PolicyMetadata,
    path: str | os.PathLike,
    example_inputs: tuple[torch.Tensor, torch.Tensor] | None = None,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
) -> Path:
    """Export a CPU, eval-mode copy of ``module`` to ``path``; return the path.

    The file is written beside ``path`` under a temporary name, checked (eager vs file
    max abs difference on fresh random inputs with another batch size <= ``tolerance``)
    and only then renamed to ``path``. On any failure no file is left behind.
    """
    import copy

    import torch

    path = Path(path)
    kind = policy_format(path)
    module = copy.deepcopy(module).to("cpu").eval()  # the caller's module stays as it was
    if example_inputs is None:
        example_inputs = random_policy_inputs(metadata, batch_size=2)
    example_inputs = _checked_inputs(example_inputs, metadata)
    with torch.no_grad():
        eager_action = module(*example_inputs)
    _check_action(eager_action, example_inputs[0].shape[0], metadata)

    with atomic_path(path) as tmp:
        try:
            if kind == "onnx":
                _write_onnx(module, example_inputs, metadata, tmp)
            else:
                _write_torchscript(module, example_inputs, metadata, tmp)
        except PolicyExportError:
            raise
        except Exception as error:  # torch.onnx / jit raise many types; name the target
            raise PolicyExportError(f"{path}: {kind} export failed: {error}") from error
        verify_policy_file(module, tmp, metadata, tolerance=tolerance, label=str(path))
    return path


def verify_policy_file(
    module: torch.nn.Module,
    path: str | os.PathLike,
    metadata: PolicyMetadata,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    label: str | None = None,
) -> float:
    """Max abs difference eager vs file on random inputs; PolicyExportError above tolerance."""
    import numpy as np
    import torch

    label = label or str(path)
    inputs = random_policy_inputs(metadata, batch_size=VERIFY_BATCH, seed=1)
    with torch.no_grad():
        expected = module(*inputs).float().numpy()
    runner = load_policy_runner(path, kind=policy_format(label))
    actual = runner(inputs[0].numpy(), inputs[1].numpy())
    if actual.shape != expected.shape:
        raise PolicyExportError(
            f"{label}: exported policy returns {OUTPUT_ACTION!r} of shape {actual.shape} for "
            f"batch {VERIFY_BATCH}, eager module {expected.shape}"
        )
    if not np.all(np.isfinite(actual)):
        raise PolicyExportError(f"{label}: exported policy returns NaN or inf")
    difference = float(np.max(np.abs(actual - expected)))
    if not difference <= tolerance:
        raise PolicyExportError(
            f"{label}: exported policy differs from the eager module by {difference:.3g} "
            f"(max abs), above the tolerance {tolerance:.1g}"
        )
    return difference


def load_policy_runner(path: str | os.PathLike, kind: str | None = None):
    """A CPU callable (image uint8 [B,9,H,W], joint float32 [B,J]) -> action [B,A].

    The node's own runtime (``lapo_ros.robot.runtime``), so export verification and
    open-loop evaluation run a file exactly as the robot does.
    """
    from lapo_ros.robot.runtime import load_policy

    backend = {"onnx": "onnxruntime", "torchscript": "torchscript"}[kind or policy_format(path)]
    return load_policy(path, backend=backend, device="cpu").infer_batch


def read_policy_metadata(path: str | os.PathLike) -> PolicyMetadata:
    """The ``PolicyMetadata`` stored in a policy file; PolicyMetadataError if absent/bad."""
    path = Path(path)
    if not path.is_file():
        raise PolicyMetadataError(f"{path}: no such policy file")
    try:
        kind = policy_format(path)
    except PolicyExportError as error:
        raise PolicyMetadataError(str(error)) from error
    text = _read_onnx_metadata(path) if kind == "onnx" else _read_torchscript_metadata(path)
    if text is None:
        raise PolicyMetadataError(
            f"{path}: no {METADATA_KEY!r} metadata; export it with training/export.py"
        )
    return PolicyMetadata.from_json(text, source=str(path))


def _checked_inputs(
    inputs: tuple[torch.Tensor, torch.Tensor], metadata: PolicyMetadata
) -> tuple[torch.Tensor, torch.Tensor]:
    import torch

    image, joint = (t.detach().to("cpu") for t in inputs)
    height, width = metadata.image_size
    if image.dtype != torch.uint8 or image.ndim != 4 or tuple(image.shape[2:]) != (height, width):
        raise PolicyExportError(
            f"example {INPUT_IMAGE!r} must be uint8 [B,9,{height},{width}], "
            f"got {image.dtype} {list(image.shape)}"
        )
    if joint.ndim != 2 or joint.shape[1] != metadata.joint_dim:
        raise PolicyExportError(
            f"example {INPUT_JOINT!r} must be [B,{metadata.joint_dim}], got {list(joint.shape)}"
        )
    if image.shape[0] < 2 or image.shape[0] != joint.shape[0]:
        raise PolicyExportError(
            "example inputs need the same batch size >= 2 (batch 1 would be fixed in the graph)"
        )
    return image, joint.float()


def _check_action(action, batch_size: int, metadata: PolicyMetadata) -> None:
    import torch

    expected = (batch_size, *metadata.action_shape)
    if not isinstance(action, torch.Tensor) or tuple(action.shape) != expected:
        shape = list(action.shape) if isinstance(action, torch.Tensor) else type(action).__name__
        raise PolicyExportError(
            f"policy module must return {OUTPUT_ACTION!r} of shape {list(expected)}, got {shape}"
        )


@contextmanager
def _quiet_jit() -> Iterator[None]:
    """TorchScript is the contract's format; silence torch's deprecation notices for it."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.jit")
        yield


def _write_onnx(module, inputs, metadata: PolicyMetadata, tmp: Path) -> None:
    import onnx
    import torch

    batch = torch.export.Dim("batch", min=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            module,
            inputs,
            input_names=[INPUT_IMAGE, INPUT_JOINT],
            output_names=[OUTPUT_ACTION],
            opset_version=ONNX_OPSET,
            dynamo=True,
            external_data=False,
            dynamic_shapes=({0: batch}, {0: batch}),
            verbose=False,
        )
    model = program.model_proto
    del model.metadata_props[:]
    entry = model.metadata_props.add()
    entry.key = METADATA_KEY
    entry.value = metadata.to_json()
    onnx.save_model(model, str(tmp))


def _write_torchscript(module, inputs, metadata: PolicyMetadata, tmp: Path) -> None:
    import torch

    with _quiet_jit(), torch.no_grad():
        traced = torch.jit.freeze(torch.jit.trace(module, inputs, check_trace=False))
        torch.jit.save(traced, str(tmp), _extra_files={METADATA_KEY: metadata.to_json()})


def _read_onnx_metadata(path: Path) -> str | None:
    try:
        import onnx
    except ImportError:  # robots may carry onnxruntime only
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as error:  # protobuf DecodeError and friends
        raise PolicyMetadataError(f"{path}: not a readable ONNX model: {error}") from error
    for entry in model.metadata_props:
        if entry.key == METADATA_KEY:
            return entry.value
    return None


def _read_torchscript_metadata(path: Path) -> str | None:
    """TorchScript files are zip archives with extra files under ``<archive>/extra/``."""
    try:
        with zipfile.ZipFile(path) as archive:
            for name in archive.namelist():
                if name.endswith(f"/extra/{METADATA_KEY}"):
                    return archive.read(name).decode("utf-8")
    except zipfile.BadZipFile as error:
        raise PolicyMetadataError(f"{path}: not a TorchScript archive: {error}") from error
    return None


def export_checkpoint(
    checkpoint: str | os.PathLike,
    path: str | os.PathLike,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
) -> PolicyMetadata:
    """Export the greedy policy of a ``training/train.py`` checkpoint (or of an agent's own
    ``save()`` file); return its metadata."""
    from lapo_ros.lapo.training.checkpoint import load_trained_agent

    policy_format(path)  # refuse an unknown suffix before loading anything
    agent, record = load_trained_agent(checkpoint, device="cpu")
    policy = agent.deployable_policy()
    metadata = PolicyMetadata(
        joint_names=agent.joint_names,
        image_size=list(policy.image_size),
        action_dim=policy.action_dim,
        joint_dim=policy.joint_dim,
        rate_hz=agent.rate_hz,
        chunk_size=policy.chunk_size,
        training_run=training_run_info(checkpoint, record) if record else {},
    )
    export_policy(policy, metadata, path, tolerance=tolerance)
    return metadata


def training_run_info(checkpoint: str | os.PathLike, record: dict) -> dict:
    """The part of a training record worth carrying in the policy file."""
    import time

    identity = record.get("data_identity") or {}
    return {
        "checkpoint": os.path.abspath(checkpoint),
        "run_dir": record.get("run_dir"),
        "algo": record.get("algo"),
        "step": record.get("step"),
        "best_metric": record.get("best_metric"),
        "best_score": record.get("best_score"),
        "best_step": record.get("best_step"),
        "data_files": [f.get("path") for f in identity.get("files", [])],
        "data_episode_ends_sha256": identity.get("episode_ends_sha256"),
        "num_train_episodes": identity.get("num_episodes"),
        "lapo_ros_version": record.get("lapo_ros_version"),
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
