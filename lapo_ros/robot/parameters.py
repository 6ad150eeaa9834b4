"""Parameters of ``policy_node``: declared in one table, validated, read once.

Each parameter is one field of ``PolicyNodeParameters``, made by ``parameter``: its default,
description, whether it may change while the node runs, and (for lists and choices) what
values it accepts. ``declare_parameters(node)`` declares them all and returns their checked
values; ``resolve_against_metadata`` checks them against the policy file and fills what the
file decides (joint names, image size) or bounds (``chunk_replan_every`` by its
chunk_size). All errors name the parameter, and the node refuses to start on any of them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from typing import Any

from lapo_ros.common.policy_file import PolicyMetadata
from lapo_ros.robot.chunk_execution import CHUNK_EXECUTIONS, DEFAULT_ENSEMBLE_DECAY
from lapo_ros.robot.runtime import BACKENDS, DEVICES

IMAGE_TRANSPORTS = ("raw", "compressed")
COMMAND_TYPES = ("float64_multi_array", "joint_trajectory")
TRIGGERS = ("timer", "inputs")


class ParameterError(ValueError):
    """A parameter value the node cannot start with; the message names the parameter."""


def parameter(
    default: Any,
    description: str,
    *,
    dynamic: bool = False,
    elements: tuple[type, ...] | None = None,
    choices: tuple[str, ...] | None = None,
    positive: bool = False,
) -> Any:
    """A ``PolicyNodeParameters`` field; its metadata is what the declaration and checks read.

    ``description`` is shown by ``ros2 param describe``; ``dynamic`` parameters may change
    while the node runs (all others are read-only); ``elements`` are the element types a list
    accepts (the first is what they become: YAML ``[1, 2]`` is fine for float limits);
    ``choices`` are the allowed values; ``positive`` requires a value > 0.
    """
    metadata = {
        "description": description,
        "dynamic": dynamic,
        "elements": elements,
        "choices": choices,
        "positive": positive,
    }
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class PolicyNodeParameters:
    """Every parameter of the policy node, with its declared default."""

    model_path: str = parameter(
        "", "exported policy file (.onnx or TorchScript .pt) with lapo_ros metadata"
    )
    backend: str = parameter(
        "auto",
        f"policy runtime: {' | '.join(BACKENDS)} (auto: by file suffix)",
        choices=BACKENDS,
    )
    device: str = parameter(
        "auto",
        f"where the policy runs: {' | '.join(DEVICES)} (auto: TensorRT when its libraries "
        "load, else CUDA when present, else the CPU; tensorrt: onnxruntime only)",
        choices=DEVICES,
    )
    tensorrt_cache_path: str = parameter(
        "",
        "folder of TensorRT's engine cache (empty: <model stem>.tensorrt_cache next to the model)",
    )
    tensorrt_fp16: bool = parameter(
        False, "TensorRT fp16 kernels: faster, but actions differ from the fp32 model's"
    )
    rate_hz: float = parameter(30.0, "control loop rate [Hz]", positive=True)
    trigger: str = parameter(
        "timer",
        "when the policy runs: timer (every 1/rate_hz) | inputs (once every camera and "
        "joint_states has a new message since the last run, at most rate_hz)",
        choices=TRIGGERS,
    )
    chunk_execution: str = parameter(
        "temporal_ensemble",
        "how a chunk policy's action chunks (chunk_size h > 1) become commands: "
        "temporal_ensemble (policy every tick, overlapping chunks averaged as in ACT) | "
        "open_loop (play chunk_replan_every rows of a chunk, then run the policy again)",
        choices=CHUNK_EXECUTIONS,
    )
    chunk_replan_every: int = parameter(
        0,
        "open_loop: run the policy every this many ticks, 1 ... the file's chunk_size "
        "(0: chunk_size, the whole chunk)",
    )
    ensemble_decay: float = parameter(
        DEFAULT_ENSEMBLE_DECAY,
        "temporal_ensemble: weight exp(-ensemble_decay * j) for the j-th oldest prediction "
        "(>= 0; 0 averages evenly, larger follows the oldest prediction more)",
    )
    enabled: bool = parameter(
        False,
        "publish commands (false: compute and report only); also the ~/enable service",
        dynamic=True,
    )
    max_sensor_age: float = parameter(
        0.15, "newest camera/joint message must be at most this old [s]", positive=True
    )
    max_sensor_skew: float = parameter(
        0.1, "stamps of the inputs used in one tick must lie within this span [s]", positive=True
    )
    image_transport: str = parameter(
        "raw", f"camera message type: {' | '.join(IMAGE_TRANSPORTS)}", choices=IMAGE_TRANSPORTS
    )
    max_image_pixels: int = parameter(
        3840 * 2160,
        "camera frames with more pixels (width*height, read from the message "
        "or the PNG/JPEG header before decoding) are rejected",
        positive=True,
    )
    command_type: str = parameter(
        "float64_multi_array",
        f"command message: {' | '.join(COMMAND_TYPES)}",
        choices=COMMAND_TYPES,
    )
    joint_names: list[str] = parameter(
        [],
        "expected policy joint inputs, checked against the model (empty: the model's)",
        elements=(str,),
    )
    image_size: list[int] = parameter(
        [],
        "expected model image size [H, W], checked against the model (empty: model's)",
        elements=(int,),
    )
    joint_lower_limits: list[float] = parameter(
        [],
        "lower position limit per commanded joint, in model action order",
        elements=(float, int),
    )
    joint_upper_limits: list[float] = parameter(
        [],
        "upper position limit per commanded joint, in model action order",
        elements=(float, int),
    )
    max_step: list[float] = parameter(
        [],
        "largest change per tick from the current position (one value or per joint)",
        elements=(float, int),
    )
    warmup_iterations: int = parameter(5, "policy passes on zero inputs before the loop starts")
    skip_log_period: float = parameter(
        5.0, "period of the warning that sums up skipped ticks [s]", positive=True
    )


def declare_parameters(node: Any) -> PolicyNodeParameters:
    """Declare all parameters on ``node`` (an rclpy Node) and return their checked values."""
    from rcl_interfaces.msg import ParameterDescriptor

    values: dict[str, Any] = {}
    defaults = PolicyNodeParameters()
    for item in fields(PolicyNodeParameters):
        descriptor = ParameterDescriptor(
            description=item.metadata["description"], read_only=not item.metadata["dynamic"]
        )
        elements = item.metadata["elements"]
        if elements:
            # an empty list carries no element type: accept any, check here
            descriptor.dynamic_typing = True
        value = node.declare_parameter(item.name, getattr(defaults, item.name), descriptor).value
        values[item.name] = _list_value(item.name, value, elements) if elements else value
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
    for item in fields(parameters):
        name, value, allowed = item.name, getattr(parameters, item.name), item.metadata["choices"]
        if allowed is not None and value not in allowed:
            raise ParameterError(f"parameter {name!r} is {value!r}; use one of {list(allowed)}")
        if item.metadata["positive"] and not value > 0:
            raise ParameterError(f"parameter {name!r} must be > 0, got {value}")
    if parameters.warmup_iterations < 0:
        raise ParameterError("parameter 'warmup_iterations' must be >= 0")
    if parameters.chunk_replan_every < 0:
        raise ParameterError(
            f"parameter 'chunk_replan_every' must be >= 0 (0: the whole chunk), got "
            f"{parameters.chunk_replan_every}"
        )
    if not (math.isfinite(parameters.ensemble_decay) and parameters.ensemble_decay >= 0):
        raise ParameterError(
            f"parameter 'ensemble_decay' must be a finite number >= 0, got "
            f"{parameters.ensemble_decay}"
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

    Also refuses models whose camera order differs from the node's, and chunk settings the
    model's ``chunk_size`` rules out. ``metadata`` is already checked on its own
    (``PolicyMetadata.from_json``).
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
    _check_chunk_settings(parameters, metadata.chunk_size, source)
    return replace(
        parameters,
        joint_names=list(metadata.joint_names),
        image_size=[int(v) for v in metadata.image_size],
    )


def _check_chunk_settings(parameters: PolicyNodeParameters, chunk_size: int, source: str) -> None:
    """``chunk_replan_every`` fits ``chunk_size``; chunks need the timer trigger."""
    replan_every = parameters.chunk_replan_every
    if replan_every > chunk_size:
        raise ParameterError(
            f"parameter 'chunk_replan_every' is {replan_every}, more than the chunk_size "
            f"{chunk_size} of {source}"
        )
    if parameters.chunk_execution == "temporal_ensemble" and replan_every > 1:
        raise ParameterError(
            f"parameter 'chunk_replan_every' is {replan_every}, but it applies to "
            "chunk_execution open_loop; temporal_ensemble runs the policy every tick (use 0)"
        )
    if chunk_size > 1 and parameters.trigger == "inputs":
        raise ParameterError(
            f"parameter 'trigger' is 'inputs', but {source} has chunk_size {chunk_size}: "
            "chunks are played one row per timer tick, use trigger 'timer'"
        )
