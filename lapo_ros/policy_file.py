"""The policy file contract: metadata every exported policy carries (no torch, no ROS).

An exported policy (``.onnx`` or TorchScript ``.pt``) takes ``image`` uint8 [B,9,H,W]
(left, right, global RGB) and ``joint`` float32 [B,J] in robot units and returns
``action`` float32 [B,A] in robot units. Its metadata is JSON under ``METADATA_KEY``:
in ONNX ``metadata_props``, in TorchScript an extra file of that name.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from lapo_ros.image_preprocessing import CAMERA_ORDER

METADATA_KEY = "lapo_ros"
FORMAT_VERSION = 1
INPUT_IMAGE = "image"
INPUT_JOINT = "joint"
OUTPUT_ACTION = "action"


class PolicyMetadataError(ValueError):
    """A policy file whose metadata is missing, malformed or from an unknown version."""


@dataclass
class PolicyMetadata:
    """What a policy file says about itself; the node checks its parameters against it."""

    joint_names: list[str]
    image_size: list[int]  # [H, W]
    action_dim: int
    joint_dim: int
    camera_order: list[str] = field(default_factory=lambda: list(CAMERA_ORDER))
    action_names: list[str] | None = None  # joints the action commands, in output order
    rate_hz: float | None = None  # control rate of the training data
    training_run: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str, *, source: str = "policy file") -> PolicyMetadata:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise PolicyMetadataError(
                f"{source}: metadata {METADATA_KEY!r} is not JSON: {error}"
            ) from error
        if not isinstance(data, dict):
            raise PolicyMetadataError(f"{source}: metadata {METADATA_KEY!r} is not a JSON object")
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise PolicyMetadataError(
                f"{source}: metadata format_version {version!r}, this lapo_ros reads "
                f"{FORMAT_VERSION}"
            )
        required = ("joint_names", "image_size", "action_dim", "joint_dim", "camera_order")
        missing = [key for key in required if key not in data]
        if missing:
            raise PolicyMetadataError(f"{source}: metadata lacks {', '.join(missing)}")
        known = {f for f in cls.__dataclass_fields__}
        metadata = cls(**{k: v for k, v in data.items() if k in known})
        if len(metadata.joint_names) != metadata.joint_dim:
            raise PolicyMetadataError(
                f"{source}: {len(metadata.joint_names)} joint_names but joint_dim "
                f"{metadata.joint_dim}"
            )
        if len(metadata.image_size) != 2:
            raise PolicyMetadataError(f"{source}: image_size must be [H, W]")
        return metadata

    @property
    def command_names(self) -> list[str]:
        """Names of the commanded joints, in the order of the action vector."""
        return self.action_names or self.joint_names[: self.action_dim]
