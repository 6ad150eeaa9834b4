"""Parameters of ``policy_node``: declared in one place, validated, read once.

``declare_parameters(node)`` declares every parameter with its description and returns a
``PolicyNodeParameters``; ``resolve_against_metadata`` checks them against the policy
file and fills what the file decides (joint names, image size). All errors name the
parameter, and the node refuses to start on any of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

from lapo_ros.common.policy_file import PolicyMetadata
from lapo_ros.robot.runtime import BACKENDS, DEVICES

IMAGE_TRANSPORTS = ("raw", "compressed")
COMMAND_TYPES = ("float64_multi_array", "joint_trajectory")


class ParameterError(ValueError):
    """A parameter value the node cannot start with; the message names the parameter."""


@dataclass
class PolicyNodeParameters:
    """Every parameter of the policy node; defaults are the declared defaults."""

    model_path: str = ""
    backend: str = "auto"
    device: str = "auto"
    rate_hz: float = 30.0
    enabled: bool = False
    max_sensor_age: float = 0.15
    max_sensor_skew: float = 0.1
    image_transport: str = "raw"
    max_image_pixels: int = 3840 * 2160
    command_type: str = "float64_multi_array"
    joint_names: list[str] = field(default_factory=list)
    image_size: list[int] = field(default_factory=list)
    joint_lower_limits: list[float] = field(default_factory=list)
    joint_upper_limits: list[float] = field(default_factory=list)
    max_step: list[float] = field(default_factory=list)
    warmup_iterations: int = 5
    skip_log_period: float = 5.0


DESCRIPTIONS: dict[str, str] = {
    "model_path": "exported policy file (.onnx or TorchScript .pt) with lapo_ros metadata",
    "backend": f"policy runtime: {' | '.join(BACKENDS)} (auto: by file suffix)",
    "device": f"where the policy runs: {' | '.join(DEVICES)} (auto: CUDA when present)",
    "rate_hz": "control loop rate [Hz]",
    "enabled": "publish commands (false: compute and report only); also the ~/enable service",
    "max_sensor_age": "newest camera/joint message must be at most this old [s]",
    "max_sensor_skew": "stamps of the inputs used in one tick must lie within this span [s]",
    "image_transport": f"camera message type: {' | '.join(IMAGE_TRANSPORTS)}",
    "max_image_pixels": "camera frames with more pixels (width*height, read from the message "
    "or the PNG/JPEG header before decoding) are rejected",
    "command_type": f"command message: {' | '.join(COMMAND_TYPES)}",
    "joint_names": "expected policy joint inputs, checked against the model (empty: the model's)",
    "image_size": "expected model image size [H, W], checked against the model (empty: model's)",
    "joint_lower_limits": "lower position limit per commanded joint, in model action order",
    "joint_upper_limits": "upper position limit per commanded joint, in model action order",
    "max_step": "largest change per tick from the current position (one value or per joint)",
    "warmup_iterations": "policy passes on zero inputs before the loop starts",
    "skip_log_period": "period of the warning that sums up skipped ticks [s]",
}
"""What each parameter means (shown by ``ros2 param describe``)."""

DYNAMIC = frozenset({"enabled"})
"""Parameters that may change while the node runs; all others are read-only."""

_LIST_ELEMENTS: dict[str, tuple[type, ...]] = {
    "joint_names": (str,),
    "image_size": (int,),
    "joint_lower_limits": (float, int),
    "joint_upper_limits": (float, int),
    "max_step": (float, int),
}
"""List parameters and the element types they accept (YAML ``[1, 2]`` is fine for limits)."""


def declare_parameters(node: Any) -> PolicyNodeParameters:
    """Declare all parameters on ``node`` (an rclpy Node) and return their checked values."""
    from rcl_interfaces.msg import ParameterDescriptor

    values: dict[str, Any] = {}
    defaults = PolicyNodeParameters()
    for item in fields(PolicyNodeParameters):
        descriptor = ParameterDescriptor(
            description=DESCRIPTIONS[item.name], read_only=item.name not in DYNAMIC
        )
        default = getattr(defaults, item.name)
        if item.name in _LIST_ELEMENTS:
            # an empty list carries no element type: accept any, check here
            descriptor.dynamic_typing = True
        value = node.declare_parameter(item.name, default, descriptor).value
        if item.name in _LIST_ELEMENTS:
            value = _list_value(item.name, value, _LIST_ELEMENTS[item.name])
        values[item.name] = value
    parameters = PolicyNodeParameters(**values)
    validate(parameters)
    return parameters


def _list_value(name: str, value: Any, elements: tuple[type, ...]) -> list:
    if value is None or (isinstance(value, (bytes, str)) and not value):
        return []
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__"):
        raise ParameterError(f"parameter {name!r} must be a list, got {value!r}")
    items = list(value)
    if not all(isinstance(v, elements) and not isinstance(v, bool) for v in items):
        raise ParameterError(
            f"parameter {name!r} must be a list of {' or '.join(t.__name__ for t in elements)}, "
            f"got {items!r}"
        )
    return [elements[0](v) for v in items]


def validate(parameters: PolicyNodeParameters) -> None:
    """Check values that do not depend on the policy file; raise ``ParameterError``."""
    if not parameters.model_path:
        raise ParameterError("parameter 'model_path' is required: the exported policy file")
    choices = {
        "backend": BACKENDS,
        "device": DEVICES,
        "image_transport": IMAGE_TRANSPORTS,
        "command_type": COMMAND_TYPES,
    }
    for name, allowed in choices.items():
        value = getattr(parameters, name)
        if value not in allowed:
            raise ParameterError(f"parameter {name!r} is {value!r}; use one of {list(allowed)}")
    for name in ("rate_hz", "max_sensor_age", "max_sensor_skew", "skip_log_period"):
        if not getattr(parameters, name) > 0:
            raise ParameterError(f"parameter {name!r} must be > 0, got {getattr(parameters, name)}")
    if parameters.warmup_iterations < 0:
        raise ParameterError("parameter 'warmup_iterations' must be >= 0")
    if parameters.max_image_pixels <= 0:
        raise ParameterError(
            f"parameter 'max_image_pixels' must be > 0, got {parameters.max_image_pixels}"
        )
    if parameters.image_size and (
        len(parameters.image_size) != 2 or min(parameters.image_size) <= 0
    ):
        raise ParameterError(
            f"parameter 'image_size' must be [H, W] with positive sizes, got "
            f"{parameters.image_size}"
        )


def resolve_against_metadata(
    parameters: PolicyNodeParameters, metadata: PolicyMetadata
) -> PolicyNodeParameters:
    """Parameters with ``joint_names``/``image_size`` filled from the model; mismatch raises.

    Also refuses models whose camera order differs from the node's. ``metadata`` is already
    checked on its own (``PolicyMetadata.from_json``).
    """
    from lapo_ros.common.images import CAMERA_ORDER

    source = parameters.model_path
    if list(metadata.camera_order) != list(CAMERA_ORDER):
        raise ParameterError(
            f"{source}: model camera_order {metadata.camera_order}, this node stacks "
            f"{list(CAMERA_ORDER)}"
        )
    if parameters.joint_names and list(parameters.joint_names) != list(metadata.joint_names):
        raise ParameterError(
            f"parameter 'joint_names' {parameters.joint_names} differs from the joint_names "
            f"of {source}: {metadata.joint_names}"
        )
    if parameters.image_size and list(parameters.image_size) != list(metadata.image_size):
        raise ParameterError(
            f"parameter 'image_size' {parameters.image_size} differs from the image_size "
            f"of {source}: {metadata.image_size}"
        )
    return replace(
        parameters,
        joint_names=list(metadata.joint_names),
        image_size=[int(v) for v in metadata.image_size],
    )
