"""Small policy files with known outputs for runtime and node tests (not a fixture module).

``action = joint[:, :A] + offset + image_gain * mean(image)``: hand-written ONNX (with
``onnx.helper``, also malformed on purpose) or a torch module exported by the project's
``lapo_ros.lapo.export``, with lapo_ros metadata per ``lapo_ros.common.policy_file``.
With the metadata's ``chunk_size`` h > 1 the policy outputs action chunks [B,h,A] whose row
i is ``joint[:, :A] + offset * (i + 1) + image_gain * mean(image)`` (row 0 is the one-action
policy's action): hand-written ONNX, or TorchScript traced by ``write_torchscript_policy``.
``replace_metadata`` and ``write_torchscript_policy`` give files whose metadata text is
anything at all (malformed, or disagreeing with the graph).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from lapo_ros.common.policy_file import (
    INPUT_IMAGE,
    INPUT_JOINT,
    METADATA_KEY,
    OUTPUT_ACTION,
    PolicyMetadata,
)


def make_metadata(
    joint_dim: int = 4,
    action_dim: int = 4,
    image_size: tuple[int, int] = (32, 32),
    chunk_size: int = 1,
) -> PolicyMetadata:
    return PolicyMetadata(
        joint_names=[f"joint_{i}" for i in range(joint_dim)],
        image_size=list(image_size),
        action_dim=action_dim,
        joint_dim=joint_dim,
        rate_hz=30.0,
        chunk_size=chunk_size,
    )


def chunk_offsets(offset: np.ndarray, chunk_size: int) -> np.ndarray:
    """Per-row offsets of the synthetic chunk policy: row i is ``offset * (i + 1)``."""
    steps = np.arange(1, chunk_size + 1, dtype=np.float32)[:, None]
    return (steps * offset.astype(np.float32)[None]).astype(np.float32)


def expected_action(
    image: np.ndarray, joint: np.ndarray, offset: np.ndarray, image_gain: float
) -> np.ndarray:
    """What the synthetic policy computes, in numpy (float32 [A])."""
    action_dim = offset.shape[0]
    mean = image[0].astype(np.float32).mean()
    return (joint[0, :action_dim] + offset + image_gain * mean).astype(np.float32)


def expected_chunk(
    image: np.ndarray, joint: np.ndarray, offset: np.ndarray, image_gain: float, chunk_size: int
) -> np.ndarray:
    """What the synthetic chunk policy computes, in numpy (float32 [h, A])."""
    mean = image[0].astype(np.float32).mean()
    rows = joint[0, : offset.shape[0]][None] + chunk_offsets(offset, chunk_size)
    return (rows + image_gain * mean).astype(np.float32)


def write_onnx_policy(
    path: Path,
    metadata: PolicyMetadata,
    offset: np.ndarray | None = None,
    image_gain: float = 0.0,
    *,
    with_metadata: bool = True,
    input_names: tuple[str, str] = (INPUT_IMAGE, INPUT_JOINT),
) -> Path:
    """Write the synthetic policy as ONNX (opset 17) and return ``path``; it outputs
    [B, chunk_size, A] chunks when ``metadata.chunk_size`` > 1."""
    action_dim, chunk_size = metadata.action_dim, metadata.chunk_size
    offset = np.zeros(action_dim, np.float32) if offset is None else offset.astype(np.float32)
    height, width = metadata.image_size
    image_name, joint_name = input_names
    nodes = [
        helper.make_node("Cast", [image_name], ["image_f"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["image_f"], ["image_mean4"], keepdims=0),
        helper.make_node("Mul", ["image_mean4", "gain"], ["image_term"]),
        helper.make_node("Slice", [joint_name, "starts", "ends", "axes"], ["joint_part"]),
    ]
    initializers = [
        helper.make_tensor("gain", TensorProto.FLOAT, [], [image_gain]),
        helper.make_tensor("starts", TensorProto.INT64, [1], [0]),
        helper.make_tensor("ends", TensorProto.INT64, [1], [action_dim]),
        helper.make_tensor("axes", TensorProto.INT64, [1], [1]),
    ]
    if chunk_size == 1:
        nodes.append(helper.make_node("Add", ["joint_part", "offset"], ["shifted"]))
        initializers.append(
            helper.make_tensor("offset", TensorProto.FLOAT, [action_dim], offset.tolist())
        )
        action_shape = ["B", action_dim]
    else:  # [B,1,A] + [h,A] -> [B,h,A]
        nodes += [
            helper.make_node("Unsqueeze", ["joint_part", "axes"], ["joint_rows"]),
            helper.make_node("Add", ["joint_rows", "offset_rows"], ["shifted"]),
        ]
        rows = chunk_offsets(offset, chunk_size)
        initializers.append(
            helper.make_tensor(
                "offset_rows", TensorProto.FLOAT, list(rows.shape), rows.ravel().tolist()
            )
        )
        action_shape = ["B", chunk_size, action_dim]
    nodes.append(helper.make_node("Add", ["shifted", "image_term"], [OUTPUT_ACTION]))
    graph = helper.make_graph(
        nodes,
        "synthetic_policy",
        [
            helper.make_tensor_value_info(image_name, TensorProto.UINT8, ["B", 9, height, width]),
            helper.make_tensor_value_info(joint_name, TensorProto.FLOAT, ["B", metadata.joint_dim]),
        ],
        [helper.make_tensor_value_info(OUTPUT_ACTION, TensorProto.FLOAT, action_shape)],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if with_metadata:
        helper.set_model_props(model, {METADATA_KEY: metadata.to_json()})
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def affine_policy_module(offset: np.ndarray, image_gain: float = 0.0, chunk_size: int = 1):
    """The synthetic policy as a torch module (for the project's ``export_policy``, or
    traced by ``write_torchscript_policy`` for chunks: [B,h,A] when ``chunk_size`` > 1)."""
    import torch

    class AffinePolicy(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("offset", torch.as_tensor(offset, dtype=torch.float32))
            self.image_gain = float(image_gain)

        def forward(self, image: torch.Tensor, joint: torch.Tensor) -> torch.Tensor:
            mean = image.float().mean(dim=(1, 2, 3)).unsqueeze(1)
            return joint[:, : self.offset.shape[0]] + self.offset + self.image_gain * mean

    class AffineChunkPolicy(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            rows = torch.as_tensor(chunk_offsets(offset, chunk_size))
            self.register_buffer("offset_rows", rows)
            self.image_gain = float(image_gain)

        def forward(self, image: torch.Tensor, joint: torch.Tensor) -> torch.Tensor:
            mean = image.float().mean(dim=(1, 2, 3)).reshape(-1, 1, 1)
            joint_rows = joint[:, : self.offset_rows.shape[1]].unsqueeze(1)
            return joint_rows + self.offset_rows + self.image_gain * mean

    return AffinePolicy() if chunk_size == 1 else AffineChunkPolicy()


def export_affine_policy(
    path: Path, metadata: PolicyMetadata, offset: np.ndarray | None = None, image_gain: float = 0.0
) -> Path:
    """Write the synthetic policy with the project's exporter (.onnx or .pt by suffix)."""
    from lapo_ros.lapo.export import export_policy

    if offset is None:
        offset = np.zeros(metadata.action_dim, np.float32)
    return export_policy(affine_policy_module(offset, image_gain), metadata, path)


def replace_metadata(path: Path, text: str) -> Path:
    """Overwrite the lapo_ros metadata of an ONNX policy file with ``text`` (unchecked)."""
    model = onnx.load(str(path))
    del model.metadata_props[:]
    helper.set_model_props(model, {METADATA_KEY: text})
    onnx.save(model, str(path))
    return path


def metadata_with(metadata: PolicyMetadata, **changes) -> str:
    """``metadata`` as JSON with some keys changed to any value (None removes the key)."""
    data = json.loads(metadata.to_json())
    data.update(changes)
    return json.dumps({key: value for key, value in data.items() if value is not None})


def write_torchscript_policy(
    path: Path,
    metadata: PolicyMetadata,
    metadata_text: str | None = None,
    offset: np.ndarray | None = None,
    image_gain: float = 0.0,
) -> Path:
    """The synthetic policy traced to TorchScript for ``metadata``'s sizes and chunk_size,
    carrying ``metadata_text`` (default: ``metadata``; unchecked, unlike the project's
    exporter, which writes only one-action policies)."""
    import torch

    if offset is None:
        offset = np.zeros(metadata.action_dim, np.float32)
    if metadata_text is None:
        metadata_text = metadata.to_json()
    height, width = metadata.image_size
    example = (
        torch.zeros((2, 9, height, width), dtype=torch.uint8),
        torch.zeros((2, metadata.joint_dim)),
    )
    with warnings.catch_warnings():  # TorchScript is the contract's format
        warnings.simplefilter("ignore", FutureWarning)
        module = affine_policy_module(offset, image_gain, metadata.chunk_size)
        traced = torch.jit.trace(module, example)
        torch.jit.save(traced, str(path), _extra_files={METADATA_KEY: metadata_text})
    return path
