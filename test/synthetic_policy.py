"""Small policy files with known outputs for runtime and node tests (not a fixture module).

``action = joint[:, :A] + offset + image_gain * mean(image)``: hand-written ONNX (with
``onnx.helper``, also malformed on purpose) or a torch module exported by the project's
``lapo_ros.lapo.export``, with lapo_ros metadata per ``lapo_ros.common.policy_file``.
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
    joint_dim: int = 4, action_dim: int = 4, image_size: tuple[int, int] = (32, 32)
) -> PolicyMetadata:
    return PolicyMetadata(
        joint_names=[f"joint_{i}" for i in range(joint_dim)],
        image_size=list(image_size),
        action_dim=action_dim,
        joint_dim=joint_dim,
        rate_hz=30.0,
    )


def expected_action(
    image: np.ndarray, joint: np.ndarray, offset: np.ndarray, image_gain: float
) -> np.ndarray:
    """What the synthetic policy computes, in numpy (float32 [A])."""
    action_dim = offset.shape[0]
    mean = image[0].astype(np.float32).mean()
    return (joint[0, :action_dim] + offset + image_gain * mean).astype(np.float32)


def write_onnx_policy(
    path: Path,
    metadata: PolicyMetadata,
    offset: np.ndarray | None = None,
    image_gain: float = 0.0,
    *,
    with_metadata: bool = True,
    input_names: tuple[str, str] = (INPUT_IMAGE, INPUT_JOINT),
) -> Path:
    """Write the synthetic policy as ONNX (opset 17) and return ``path``."""
    action_dim = metadata.action_dim
    offset = np.zeros(action_dim, np.float32) if offset is None else offset.astype(np.float32)
    height, width = metadata.image_size
    image_name, joint_name = input_names
    nodes = [
        helper.make_node("Cast", [image_name], ["image_f"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["image_f"], ["image_mean4"], keepdims=0),
        helper.make_node("Mul", ["image_mean4", "gain"], ["image_term"]),
        helper.make_node("Slice", [joint_name, "starts", "ends", "axes"], ["joint_part"]),
        helper.make_node("Add", ["joint_part", "offset"], ["shifted"]),
        helper.make_node("Add", ["shifted", "image_term"], [OUTPUT_ACTION]),
    ]
    initializers = [
        helper.make_tensor("gain", TensorProto.FLOAT, [], [image_gain]),
        helper.make_tensor("offset", TensorProto.FLOAT, [action_dim], offset.tolist()),
        helper.make_tensor("starts", TensorProto.INT64, [1], [0]),
        helper.make_tensor("ends", TensorProto.INT64, [1], [action_dim]),
        helper.make_tensor("axes", TensorProto.INT64, [1], [1]),
    ]
    graph = helper.make_graph(
        nodes,
        "synthetic_policy",
        [
            helper.make_tensor_value_info(image_name, TensorProto.UINT8, ["B", 9, height, width]),
            helper.make_tensor_value_info(joint_name, TensorProto.FLOAT, ["B", metadata.joint_dim]),
        ],
        [helper.make_tensor_value_info(OUTPUT_ACTION, TensorProto.FLOAT, ["B", action_dim])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if with_metadata:
        helper.set_model_props(model, {METADATA_KEY: metadata.to_json()})
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def affine_policy_module(offset: np.ndarray, image_gain: float = 0.0):
    """The synthetic policy as a torch module (for the project's ``export_policy``)."""
    import torch

    class AffinePolicy(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("offset", torch.as_tensor(offset, dtype=torch.float32))
            self.image_gain = float(image_gain)

        def forward(self, image: torch.Tensor, joint: torch.Tensor) -> torch.Tensor:
            mean = image.float().mean(dim=(1, 2, 3)).unsqueeze(1)
            return joint[:, : self.offset.shape[0]] + self.offset + self.image_gain * mean

    return AffinePolicy()


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
    path: Path, metadata: PolicyMetadata, metadata_text: str, offset: np.ndarray | None = None
) -> Path:
    """The synthetic policy traced to TorchScript for ``metadata``'s sizes, carrying
    ``metadata_text`` (unchecked, unlike the project's exporter)."""
    import torch

    if offset is None:
        offset = np.zeros(metadata.action_dim, np.float32)
    height, width = metadata.image_size
    example = (
        torch.zeros((2, 9, height, width), dtype=torch.uint8),
        torch.zeros((2, metadata.joint_dim)),
    )
    with warnings.catch_warnings():  # TorchScript is the contract's format
        warnings.simplefilter("ignore", FutureWarning)
        traced = torch.jit.trace(affine_policy_module(offset), example)
        torch.jit.save(traced, str(path), _extra_files={METADATA_KEY: metadata_text})
    return path
