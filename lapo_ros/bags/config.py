"""Configuration of ``bag_to_hdf5``: dataclasses and YAML loading (config/bag_to_hdf5.yaml).

Labels file (``reward.labels_file``, ``--labels``): see ``lapo_ros.dataset.labels``.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from rosbags.typesys import Stores

from lapo_ros.common.images import CAMERA_ORDER
from lapo_ros.common.joints import JointNameError, check_unique
from lapo_ros.common.validation import check_fields, read_yaml_mapping, typed_value

REWARD_SOURCES = ("labels", "topic", "none")
STAMP_SOURCES = ("header", "receive")


class ConfigError(ValueError):
    """An invalid configuration; the message names the file and key."""


@dataclass
class TopicConfig:
    """Topic names in the bags. ``command: null`` uses the next joint position as action."""

    left: str = "/left/image_raw"
    right: str = "/right/image_raw"
    global_: str = "/global/image_raw"
    joint_states: str = "/joint_states"
    command: str | None = "/commands"

    def cameras(self) -> dict[str, str]:
        """Camera name -> topic, in CAMERA_ORDER."""
        return dict(zip(CAMERA_ORDER, (self.left, self.right, self.global_), strict=True))


@dataclass
class RewardConfig:
    """Where rewards and terminals come from.

    ``labels``: from the labels file. A successful bag ends in a terminal state with
    ``success_reward`` on its last step. A failed bag gets ``failure_reward`` on its final
    transition: with ``terminal_on_failure`` its last step, terminal (the failure is final,
    nothing is bootstrapped after it); without, the step before the last, and the agent
    bootstraps from the value of the last state (the operator stopped a task that could
    have gone on).
    ``topic``: a std_msgs Float32/Float64 topic, each message added to the nearest kept step;
    the final step is terminal when ``topic_terminal``. ``none``: zero rewards, no terminals.

    The last step of an episode that is not terminal has no next state, so it is no
    transition: a reward that falls on it is moved onto the step before it (which is why a
    failed bag's reward lands there without ``terminal_on_failure``).
    """

    source: str = "labels"
    labels_file: str | None = None
    topic: str = "/reward"
    success_reward: float = 1.0
    failure_reward: float = 0.0
    terminal_on_failure: bool = False
    topic_terminal: bool = True


@dataclass
class BagConversionConfig:
    """Everything ``bag_to_hdf5`` needs besides the bag paths and the output file."""

    topics: TopicConfig = field(default_factory=TopicConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    joint_names: list[str] = field(default_factory=list)  # empty: first joint_states message
    action_joint_names: list[str] = field(default_factory=list)  # empty: joint_names
    command_joint_names: list[str] = field(default_factory=list)  # Float64MultiArray order
    rate_hz: float = 10.0
    tolerance_s: float | None = None  # None: half a period
    max_gap_s: float = 0.5
    min_episode_steps: int = 2
    image_size: tuple[int, int] = (224, 224)  # (height, width)
    stamps: str = "header"  # header (receive time when a stamp is zero) | receive
    ros_distro: str = "humble"
    compression: str | None = None
    workers: int = 2  # image decode threads
    frame_cache_mb: int = 1024  # resized frames kept from the first pass; 0: always 2 passes

    @property
    def tolerance(self) -> float:
        return 0.5 / self.rate_hz if self.tolerance_s is None else self.tolerance_s

    def validate(self, origin: str = "config") -> None:
        """Raise ConfigError naming ``origin`` and the key at fault."""
        check_fields(origin, self, {
            "rate_hz": (self.rate_hz > 0, "must be > 0"),
            "tolerance_s": (self.tolerance > 0, "must be > 0"),
            "max_gap_s": (self.max_gap_s > 0, "must be > 0"),
            "min_episode_steps": (self.min_episode_steps >= 1, "must be >= 1"),
            "image_size": (len(self.image_size) == 2 and min(self.image_size) > 0,
                           "must be [height, width] > 0"),
            "stamps": (self.stamps in STAMP_SOURCES, f"must be one of {STAMP_SOURCES}"),
            "reward.source": (self.reward.source in REWARD_SOURCES,
                              f"must be one of {REWARD_SOURCES}"),
            "reward.labels_file": (
                self.reward.source != "labels" or self.reward.labels_file is not None,
                "is needed with reward.source 'labels' (or pass --labels)"),
            "workers": (self.workers >= 1, "must be >= 1"),
            "frame_cache_mb": (self.frame_cache_mb >= 0, "must be >= 0"),
            "compression": (self.compression in (None, "gzip", "lzf"),
                            "must be null, gzip or lzf"),
            "ros_distro": (f"ros2_{self.ros_distro}" in {s.value for s in Stores},
                           "must name a ROS 2 distro known to rosbags (humble, jazzy, ...)"),
        }, ConfigError)
        for key in ("joint_names", "action_joint_names", "command_joint_names"):
            try:
                check_unique(getattr(self, key), f"{origin}: {key}")
            except JointNameError as error:
                raise ConfigError(str(error)) from None
        for camera, topic in self.topics.cameras().items():
            if not topic:
                raise ConfigError(f"{origin}: topics.{camera} is empty")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict in the YAML's vocabulary (``global`` rather than ``global_``)."""
        data = asdict(self)
        data["topics"]["global"] = data["topics"].pop("global_")
        data["image_size"] = list(self.image_size)
        return data


def _build(cls, data: Any, origin: str, prefix: str = ""):
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: {prefix or 'top level'} must be a mapping")
    names = {f.name.rstrip("_"): f for f in fields(cls)}
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ConfigError(f"{origin}: unknown key {prefix}{unknown[0]}; known: {sorted(names)}")
    kwargs = {}
    for key, value in data.items():
        spec = names[key]
        if spec.name == "topics":
            value = _build(TopicConfig, value, origin, "topics.")
        elif spec.name == "reward":
            value = _build(RewardConfig, value, origin, "reward.")
        else:
            value = typed_value(cls, spec.name, value, f"{origin}: {prefix}{key}", ConfigError)
        kwargs[spec.name] = value
    return cls(**kwargs)


def config_from_dict(
    data: dict, origin: str = "config", *, validate: bool = True
) -> BagConversionConfig:
    """Build (and validate) a config from a YAML-style dict; ``origin`` names it in errors."""
    config = _build(BagConversionConfig, data or {}, origin)
    if validate:
        config.validate(origin)
    return config


def load_config(
    path: str | os.PathLike | None, *, validate: bool = True
) -> BagConversionConfig:
    """Load a YAML config (see config/bag_to_hdf5.yaml); None gives the defaults.

    ``validate=False`` leaves validation to the caller, e.g. after command-line overrides.
    """
    if path is None:
        return BagConversionConfig()
    data = read_yaml_mapping(path, "config file", ConfigError)
    return config_from_dict(data, os.fspath(path), validate=validate)
