"""Settings of a training run: ``config/train.yaml`` + command-line overrides -> ``TrainConfig``.

The resolved config is saved as ``RUN_DIR/config.yaml``; ``--resume`` reads it back and
accepts changes only to the options that do not change what is learned (``RESUMABLE``).
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lapo_ros.common.files import atomic_path
from lapo_ros.common.validation import (
    check_fields,
    read_yaml_mapping,
    typed_value,
    unknown_keys,
)
from lapo_ros.dataset.aloha import parse_joint_names
from lapo_ros.lapo.algorithms.config import AgentConfig, BCConfig, LAPOConfig

AGENT_SECTIONS: dict[str, tuple[str, type[AgentConfig]]] = {
    "lapo": ("agent", LAPOConfig),
    "bc": ("bc", BCConfig),
}
"""algo -> (the config section holding its options, their dataclass)."""
ALGORITHMS = tuple(AGENT_SECTIONS)
CONFIG_NAME = "config.yaml"
RESUMABLE = frozenset({"steps", "device", "num_workers", "val_every", "checkpoint_every",
                       "log_every"})
"""Options a resumed run may change; the others must match the run being resumed."""
SECTION_NAMES = tuple(section for section, _ in AGENT_SECTIONS.values())


class TrainConfigError(ValueError):
    """A config file or option that cannot be used; the message names the file and key."""


@dataclass
class TrainConfig:
    """Every knob of ``training/train.py`` (see config/train.yaml for their meaning)."""

    data: list[str]  # HDF5 files or folders of episode files
    out: str  # run directory
    algo: str = "lapo"
    steps: int = 100_000
    batch_size: int = 64  # per process
    image_size: int = 224
    device: str = "auto"
    seed: int = 0
    num_workers: int = 2
    val_fraction: float = 0.1
    val_every: int = 1000
    val_batches: int = 16
    checkpoint_every: int = 1000
    log_every: int = 50
    # ALOHA/ACT episode files (lapo_ros.dataset.aloha): camera names when not detected,
    # joint names and rate for files that record none (None: ALOHA's, 50 Hz), success
    # labels (file stem -> true/false), or every unlabelled episode succeeded
    aloha_cameras: str | None = None  # left=NAME,right=NAME,global=NAME
    aloha_joint_names: list[str] | str | None = None  # a list or NAME,NAME,...
    aloha_rate_hz: float | None = None
    labels: str | None = None  # labels YAML
    assume_success: bool = False
    agent: dict[str, Any] = field(default_factory=dict)  # LAPOConfig overrides (algo: lapo)
    bc: dict[str, Any] = field(default_factory=dict)  # BCConfig overrides (algo: bc)

    def __post_init__(self) -> None:
        if isinstance(self.data, str | os.PathLike):
            self.data = [self.data]
        self.data = [os.fspath(p) for p in self.data]
        self.out = os.fspath(self.out)
        if isinstance(self.aloha_joint_names, str):  # NAME,NAME,... saved as the list it means
            self.aloha_joint_names = parse_joint_names(self.aloha_joint_names)
        self.agent = dict(self.agent or {})
        self.bc = dict(self.bc or {})

    def validate(self, source: str = "training config") -> TrainConfig:
        """Raise TrainConfigError naming ``source`` and every bad option."""
        checks = {
            "data": bool(self.data),
            "out": bool(self.out),
            "algo": self.algo in ALGORITHMS,
            "steps": self.steps >= 1,
            "batch_size": self.batch_size >= 1,
            "image_size": self.image_size >= 16,
            "device": re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device) is not None,
            "num_workers": self.num_workers >= 0,
            "val_fraction": 0.0 < self.val_fraction < 1.0,
            "val_every": self.val_every >= 1,
            "val_batches": self.val_batches >= 1,
            "checkpoint_every": self.checkpoint_every >= 1,
            "log_every": self.log_every >= 1,
        }
        check_fields(source, self, checks, TrainConfigError)
        for section, config_class in AGENT_SECTIONS.values():
            options = getattr(self, section)
            if "image_size" in options:
                raise TrainConfigError(
                    f"{source}: set image_size at the top level, not under {section}"
                )
            try:
                config_class.from_overrides(options, owner=f"{source}: {section}")
            except (TypeError, ValueError) as error:
                raise TrainConfigError(str(error)) from error
        return self

    def agent_overrides(self) -> dict[str, Any]:
        """Keyword overrides for the ``algo`` agent (its section of the config), with the
        run's seed and image size."""
        section, _ = AGENT_SECTIONS[self.algo]
        return {"seed": self.seed, **getattr(self, section), "image_size": self.image_size}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_train_config(
    config_path: str | os.PathLike | None, overrides: dict[str, Any]
) -> TrainConfig:
    """Settings from ``config_path`` (YAML) with ``overrides`` (None values ignored) on top."""
    settings = read_yaml_settings(config_path) if config_path is not None else {}
    source = os.fspath(config_path) if config_path is not None else "command line"
    merge_overrides(settings, overrides)
    return build_config(settings, source)


def resume_config(run_dir: str | os.PathLike, overrides: dict[str, Any]) -> TrainConfig:
    """The saved config of ``run_dir`` with the allowed ``overrides`` applied."""
    path = Path(run_dir) / CONFIG_NAME
    if not path.is_file():
        raise TrainConfigError(f"{path}: no such file; {run_dir} holds no run to resume")
    saved = build_config(read_yaml_settings(path), os.fspath(path))
    changes = {k: v for k, v in overrides.items()
               if v is not None and k not in SECTION_NAMES}
    conflicts = [
        f"{key} (run: {getattr(saved, key)!r}, now: {value!r})"
        for key, value in changes.items()
        if key not in RESUMABLE and _normalised(value) != _normalised(getattr(saved, key))
    ]
    if conflicts or any(overrides.get(section) for section in SECTION_NAMES):
        shown = ", ".join(conflicts) or "agent settings"
        raise TrainConfigError(
            f"{path}: --resume continues that run as configured; these options differ: {shown}. "
            f"Only {', '.join(sorted(RESUMABLE))} may change on resume"
        )
    settings = saved.to_dict()
    settings.update({k: v for k, v in changes.items() if k in RESUMABLE})
    return build_config(settings, os.fspath(path))


def save_train_config(config: TrainConfig, run_dir: str | os.PathLike) -> Path:
    """Write the resolved config to ``RUN_DIR/config.yaml`` (what ``--resume`` reads)."""
    path = Path(run_dir) / CONFIG_NAME
    with atomic_path(path) as tmp:
        tmp.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    return path


def read_yaml_settings(path: str | os.PathLike) -> dict[str, Any]:
    """The option: value mapping of a training config file."""
    return read_yaml_mapping(path, "config file", TrainConfigError)


def merge_overrides(settings: dict[str, Any], overrides: dict[str, Any]) -> None:
    """Put ``overrides`` (command-line values) over ``settings`` in place: None means "not
    given" and leaves the setting; the agent sections merge key by key."""
    for key, value in overrides.items():
        if value is None:
            continue
        if key in SECTION_NAMES:
            settings[key] = {**(settings.get(key) or {}), **value}
        else:
            settings[key] = value


def build_config(settings: dict[str, Any], source: str) -> TrainConfig:
    """A validated TrainConfig from plain settings; every error names ``source`` and the key
    (unknown, missing, wrong type or invalid value)."""
    unknown_keys(TrainConfig, settings, source, TrainConfigError)
    missing = [name for name in ("data", "out") if not settings.get(name)]
    if missing:
        raise TrainConfigError(f"{source}: missing {', '.join(missing)}")
    for section, config_class in AGENT_SECTIONS.values():
        if settings.get(section) is not None and not isinstance(settings[section], dict):
            raise TrainConfigError(
                f"{source}: {section} must be a mapping of {config_class.__name__} fields")
    typed = {key: value if key == "data" else
             typed_value(TrainConfig, key, value, f"{source}: {key}", TrainConfigError)
             for key, value in settings.items()}
    return TrainConfig(**typed).validate(source)


def _normalised(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return [os.path.abspath(v) if isinstance(v, str) else v for v in value]
    return value
