"""The policy file contract: metadata every exported policy carries (no torch, no ROS).

An exported policy (``.onnx`` or TorchScript ``.pt``) takes ``image`` uint8 [B,9,H,W]
(left, right, global RGB) and ``joint`` float32 [B,J] in robot units and returns
``action`` float32 in robot units: [B,A] when ``chunk_size`` is 1, else [B,h,A] with
h = ``chunk_size``, row i the command for i control periods (``rate_hz``) after the
observation (an action chunk, as ACT's). Its metadata is JSON under ``METADATA_KEY``:
in ONNX ``metadata_props``, in TorchScript an extra file of that name.
``PolicyMetadata.from_json`` is the one place where metadata is checked.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from lapo_ros.common.images import CAMERA_ORDER
from lapo_ros.common.joints import JointNameError, check_unique

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
    chunk_size: int = 1  # actions per output: 1 -> [B,A]; h > 1 -> [B,h,A]
    training_run: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str, *, source: str = "policy file") -> PolicyMetadata:
        """Parse and check metadata; ``PolicyMetadataError`` names ``source`` and the key."""
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
        metadata.check(source)
        return metadata

    def check(self, source: str) -> None:
        """Raise ``PolicyMetadataError`` naming ``source`` and the key of any bad value."""
        where = f"{source}: metadata"
        _check_positive_int(self.joint_dim, f"{where} joint_dim")
        _check_positive_int(self.action_dim, f"{where} action_dim")
        _check_positive_int(self.chunk_size, f"{where} chunk_size")
        _check_names(self.joint_names, f"{where} joint_names", self.joint_dim, "joint_dim")
        if self.action_names is not None:
            _check_names(self.action_names, f"{where} action_names", self.action_dim, "action_dim")
        elif self.action_dim > self.joint_dim:
            raise PolicyMetadataError(
                f"{where} has action_dim {self.action_dim} > joint_dim {self.joint_dim} but no "
                "action_names: name the commanded joints"
            )
        if not _is_list_of(self.image_size, int) or len(self.image_size) != 2:
            raise PolicyMetadataError(
                f"{where} image_size must be [H, W] (two integers), got {self.image_size!r}"
            )
        for name, value in zip(("H", "W"), self.image_size, strict=True):
            _check_positive_int(value, f"{where} image_size {name}")
        if not _is_list_of(self.camera_order, str):
            raise PolicyMetadataError(
                f"{where} camera_order must be a list of camera names, got {self.camera_order!r}"
            )
        if self.rate_hz is not None and not (_is_number(self.rate_hz) and self.rate_hz > 0):
            raise PolicyMetadataError(f"{where} rate_hz must be > 0, got {self.rate_hz!r}")
        if not isinstance(self.training_run, dict):
            raise PolicyMetadataError(
                f"{where} training_run must be a JSON object, got {self.training_run!r}"
            )

    @property
    def action_shape(self) -> tuple[int, ...]:
        """One observation's ``action`` output: (A,) or, for chunks, (h, A)."""
        if self.chunk_size == 1:
            return (self.action_dim,)
        return (self.chunk_size, self.action_dim)

    @property
    def command_names(self) -> list[str]:
        """Names of the commanded joints, in the order of the action vector."""
        return self.action_names or self.joint_names[: self.action_dim]


def _is_list_of(value: Any, kind: type) -> bool:
    return isinstance(value, list) and all(
        isinstance(v, kind) and not isinstance(v, bool) for v in value
    )


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_positive_int(value: Any, what: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise PolicyMetadataError(f"{what} must be a positive integer, got {value!r}")


def _check_names(names: Any, what: str, count: int, count_key: str) -> None:
    """A list of ``count`` distinct, non-empty joint names."""
    if not _is_list_of(names, str) or not all(names):
        raise PolicyMetadataError(f"{what} must be a list of joint names, got {names!r}")
    if len(names) != count:
        raise PolicyMetadataError(f"{what} has {len(names)} names but {count_key} is {count}")
    try:
        check_unique(names, what)
    except JointNameError as error:
        raise PolicyMetadataError(str(error)) from error
