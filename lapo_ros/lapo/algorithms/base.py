"""What every offline agent shares: its data, its record of modules and optimisers, the
training loop, greedy acting, and one checkpoint file.

An agent keeps its networks, normalisers and optimisers in one ``AgentModules`` dataclass
(``agent.modules``; each field is also readable as ``agent.<name>``). Checkpointing, train/eval
mode, DDP broadcast and gradient averaging all go through that record, never through a scan
of the agent's attributes. Fields named ``<x>_target`` are target networks of ``<x>``: they
stay in eval mode and follow ``<x>`` by Polyak averaging.

The checkpoint (``checkpoint.py``) holds what the agent was built from: constructor
arguments, config, dataset statistics, and the data's joint names and rate, so that an
agent saved with ``save()`` exports to a policy file without a training run around it.
"""

from __future__ import annotations

import copy
import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import Any, ClassVar, Protocol

import numpy as np
import torch
from torch import nn

from lapo_ros.lapo.algorithms.checkpoint import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    CheckpointError,
    load_states,
    read_checkpoint,
    save_checkpoint,
)
from lapo_ros.lapo.algorithms.config import AgentConfig
from lapo_ros.lapo.compute import autocast_dtype, memory_layout, resolve_device
from lapo_ros.lapo.data.augmentation import random_shift, shift_pixels
from lapo_ros.lapo.data.batch import DatasetStatistics, TransitionBatch
from lapo_ros.lapo.models.networks import ImageJointEncoder
from lapo_ros.lapo.models.policy import DeployablePolicy, observation_arrays


class TransitionSource(Protocol):
    """What the agents need from a replay buffer (``MultimodalReplayBuffer`` provides it;
    ``joint_names``, ``rate_hz`` and ``num_episodes`` are read when present)."""

    statistics: DatasetStatistics
    image_size: int

    def sample(self, batch_size: int, discount: float | None = None,
               chunk_size: int = 1) -> TransitionBatch: ...


@dataclass
class AgentModules:
    """An agent's networks, normalisers and optimisers: subclasses declare the fields."""

    def networks(self) -> dict[str, nn.Module]:
        """Every network, target and normaliser by field name (what the checkpoint holds)."""
        return {f.name: getattr(self, f.name) for f in fields(self)
                if isinstance(getattr(self, f.name), nn.Module)}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Every optimiser by field name (checkpointed; DDP averages their gradients)."""
        return {f.name: getattr(self, f.name) for f in fields(self)
                if isinstance(getattr(self, f.name), torch.optim.Optimizer)}

    def trained(self) -> list[nn.Module]:
        """Networks with trainable parameters (not targets): train/eval mode applies here."""
        return [module for name, module in self.networks().items()
                if not name.endswith("_target")
                and any(p.requires_grad for p in module.parameters())]

    def target_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        """(online, target) for every ``<x>_target`` field."""
        networks = self.networks()
        return [(networks[name.removesuffix("_target")], module)
                for name, module in networks.items() if name.endswith("_target")]


@functools.cache
def _field_names(cls: type) -> frozenset[str]:
    return frozenset(f.name for f in fields(cls))


def check_batch(owner: str, batch: TransitionBatch, image_size: int, joint_dim: int,
                action_dim: int, chunk_size: int = 1) -> None:
    """Raise ValueError naming the field whose shape does not fit the agent."""
    expected = {
        "image": (9, image_size, image_size),
        "next_image": (9, image_size, image_size),
        "joint": (joint_dim,),
        "next_joint": (joint_dim,),
        "action": (action_dim,) if chunk_size == 1 else (chunk_size, action_dim),
        "reward": (chunk_size,),
        "not_done": (1,),
    }
    if chunk_size > 1:
        if batch.chunk_steps is None:
            raise ValueError(f"{owner}: chunk_size {chunk_size} needs batches with "
                             f"chunk_steps: sample them with chunk_size={chunk_size}")
        expected["chunk_steps"] = (1,)
    size = batch.image.shape[0]
    for name, shape in expected.items():
        tensor = getattr(batch, name)
        flat_scalar = shape == (1,) and tensor.ndim == 1  # [B] rewards are read as [B, 1]
        if tensor.shape[0] != size or (tuple(tensor.shape[1:]) != shape and not flat_scalar):
            raise ValueError(
                f"{owner}: batch.{name} has shape {tuple(tensor.shape)}, expected [{size}, "
                f"{', '.join(map(str, shape))}]"
            )
    if batch.image.dtype != torch.uint8 or batch.next_image.dtype != torch.uint8:
        raise ValueError(f"{owner}: batch images must be uint8, got {batch.image.dtype}")


class OfflineAgent:
    """Base of ``MultimodalLatent`` and ``BehaviorCloning``.

    Subclasses set ``kind`` (the checkpoint's agent name), ``config_class`` and
    ``size_arguments`` (constructor arguments a checkpoint must match), call ``_setup`` first
    in ``__init__``, build ``self.modules`` (then call ``_compile_encoders``) and
    ``self._policy`` (their ``DeployablePolicy``), and provide ``_update(batch)`` (one step,
    diagnostics as tensors) and ``_arguments()``.
    """

    kind: ClassVar[str]
    config_class: ClassVar[type[AgentConfig]]
    size_arguments: ClassVar[tuple[str, ...]] = ("action_dim",)
    modules: AgentModules
    _policy: DeployablePolicy

    def _setup(self, replay_buffer: TransitionSource | None, statistics: DatasetStatistics | None,
               device: str | torch.device | None, overrides: dict[str, Any],
               joint_names: Sequence[str] | None, rate_hz: float | None) -> None:
        """Data, config and device from the buffer (preferred) or explicit arguments."""
        owner = type(self).__name__
        config = self.config_class.from_overrides(overrides, owner=owner)
        if replay_buffer is not None:
            size = int(replay_buffer.image_size)
            if "image_size" in overrides and int(overrides["image_size"]) != size:
                raise ValueError(
                    f"{owner}: image_size={overrides['image_size']} but the replay buffer holds "
                    f"{size} px images; give the same image_size to both"
                )
            config = replace(config, image_size=size)
            statistics = replay_buffer.statistics
            joint_names = joint_names or getattr(replay_buffer, "joint_names", None)
            rate_hz = rate_hz or getattr(replay_buffer, "rate_hz", None)
        elif statistics is None:
            raise ValueError(f"{owner}: give a replay_buffer or dataset statistics")
        self.config = config
        self.replay_buffer = replay_buffer
        self.statistics = statistics
        self.device = resolve_device(device)
        # the dtype the update autocasts to here (config "auto": bf16 where native)
        self.autocast_dtype = autocast_dtype(config.autocast_dtype, self.device)
        self.joint_dim = int(np.asarray(statistics.joint_mean).size)
        self.joint_names = list(joint_names or [f"joint_{i}" for i in range(self.joint_dim)])
        if len(self.joint_names) != self.joint_dim:
            raise ValueError(f"{owner}: {len(self.joint_names)} joint_names for "
                             f"{self.joint_dim} joints in the statistics")
        self.rate_hz = None if rate_hz is None else float(rate_hz)
        self.total_it = 0
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(config.seed)

    def _encoder(self) -> ImageJointEncoder:
        """The 9-channel ResNet18 + joint encoder as configured, on the agent's device (NHWC
        with ``channels_last``); the caller seeds the initialisation."""
        config = self.config
        encoder = ImageJointEncoder(
            joint_dim=self.joint_dim,
            image_feature_dim=config.image_feature_dim,
            fusion_dim=config.feature_dim,
            joint_hidden_dim=config.joint_hidden_dim,
            pretrained_path=config.pretrained_path,
            conv1_scale=config.conv1_scale,
        ).to(self.device)
        if config.channels_last:
            encoder.to(memory_format=torch.channels_last)
        return encoder

    def _compile_encoders(self) -> None:
        """``compile_encoders``: torch.compile every observation encoder in place (the
        deployable copy, a deepcopy, runs eager)."""
        if not self.config.compile_encoders:
            return
        for network in self.modules.networks().values():
            for module in network.modules():
                if isinstance(module, ImageJointEncoder):
                    module.compile()

    def _images(self, image: torch.Tensor) -> torch.Tensor:
        """A batch's uint8 images in the configured memory layout."""
        return memory_layout(image, self.config.channels_last)

    def _training_images(self, image: torch.Tensor) -> torch.Tensor:
        """A training batch's uint8 images as the update's encoder reads them: randomly
        shifted per sample (``random_shift``), in the configured memory layout."""
        pad = shift_pixels(self.config.random_shift, self.config.image_size)
        return self._images(random_shift(image, pad, self.generator))

    def __getattr__(self, name: str) -> Any:
        """``agent.<field>`` reads that field of ``agent.modules`` (the seed's attributes)."""
        modules = self.__dict__.get("modules")
        if modules is not None and name in _field_names(type(modules)):
            return getattr(modules, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @property
    def return_discount(self) -> float | None:
        """The discount under which training batches must carry ``return_to_go``; None
        when the update does not read returns."""
        return None

    @property
    def chunk_size(self) -> int:
        """Actions per training batch row and per prediction (``AgentConfig.chunk_size``)."""
        return self.config.chunk_size

    def _action_target(self, action: torch.Tensor) -> torch.Tensor:
        """Robot-unit actions [B, A] or chunks [B, h, A] -> z-scored per joint, [B, h * A]:
        what the heads predict."""
        return self.action_scaler.normalize(action.float()).reshape(action.shape[0], -1)

    def _update(self, batch: TransitionBatch) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def _arguments(self) -> dict[str, Any]:
        raise NotImplementedError

    def set_training(self, training: bool) -> None:
        """Train or eval mode for the trained networks (targets always stay in eval)."""
        for module in self.modules.trained():
            module.train(training)

    # ------------------------------------------------------------------ training
    def train(self, iterations: int, batch_size: int = 100) -> dict[str, float]:
        """``iterations`` updates on ``replay_buffer.sample(batch_size)``; mean diagnostics."""
        if self.replay_buffer is None:
            raise RuntimeError(f"{type(self).__name__}.train: this agent has no replay_buffer")
        if iterations < 1 or batch_size < 1:
            raise ValueError(
                f"iterations ({iterations}) and batch_size ({batch_size}) must be >= 1"
            )
        totals: dict[str, torch.Tensor] = {}
        request: dict[str, Any] = {}  # sources written for the seed take batch_size only
        if self.return_discount is not None:
            request["discount"] = self.return_discount
        if self.chunk_size > 1:
            request["chunk_size"] = self.chunk_size
        for _ in range(iterations):
            batch = self.replay_buffer.sample(batch_size, **request)
            for name, value in self._update(batch).items():
                totals[name] = totals[name] + value if name in totals else value
        metrics = {name: float(value) / iterations for name, value in totals.items()}
        metrics["step"] = float(self.total_it)
        return metrics

    def train_step(self, batch: TransitionBatch) -> dict[str, float]:
        """One update on a batch from any data loader; diagnostics as floats."""
        metrics = {name: float(value) for name, value in self._update(batch).items()}
        metrics["step"] = float(self.total_it)
        return metrics

    # ------------------------------------------------------------------ acting
    @torch.no_grad()
    def select_action(
        self,
        left_img: np.ndarray,
        right_img: np.ndarray,
        global_img: np.ndarray,
        joint: np.ndarray,
    ) -> np.ndarray:
        """uint8 HWC RGB images of any size + joint (robot units) -> action (A,) in robot
        units; with ``chunk_size`` h > 1 the chunk (h, A), row i for i steps ahead."""
        image, joint = observation_arrays(
            left_img, right_img, global_img, joint, self.config.image_size, self.joint_dim
        )
        self.set_training(False)
        image_t = self._images(torch.from_numpy(image).unsqueeze(0).to(self.device))
        joint_t = torch.from_numpy(joint).unsqueeze(0).to(self.device)
        return self._policy(image_t, joint_t)[0].cpu().numpy()

    def deployable_policy(self) -> DeployablePolicy:
        """A standalone copy of the greedy policy (eval mode, float32, agent's device)."""
        policy = copy.deepcopy(self._policy).float().eval()
        policy.obs_encoder.to(memory_format=torch.contiguous_format)
        return policy.requires_grad_(False)

    # ------------------------------------------------------------------ checkpoints
    def save(self, path: str | os.PathLike) -> None:
        """One file: networks, targets, optimisers, statistics, config, the data's joint
        names and rate, step and noise-generator state."""
        save_checkpoint(path, {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "kind": self.kind,
            "arguments": self._arguments(),
            "config": self.config.to_dict(),
            "statistics": self.statistics.to_dict(),
            "data": {"joint_names": self.joint_names, "rate_hz": self.rate_hz},
            "step": self.total_it,
            "modules": {n: m.state_dict() for n, m in self.modules.networks().items()},
            "optimizers": {n: o.state_dict() for n, o in self.modules.optimizers().items()},
            "generator": self.generator.get_state(),
        })

    def load(self, path: str | os.PathLike) -> None:
        """Restore everything ``save`` wrote into this agent (same sizes required)."""
        path = os.fspath(path)
        payload = read_checkpoint(path, self.kind)
        for name in self.size_arguments:
            saved, mine = payload["arguments"][name], getattr(self, name)
            if saved != mine:
                raise CheckpointError(f"checkpoint {path!r}: {name} {saved}, this agent has {mine}")
        load_states(path, self.modules.networks(), payload["modules"])
        load_states(path, self.modules.optimizers(), payload["optimizers"])
        self.statistics = DatasetStatistics.from_dict(payload["statistics"])
        self.joint_names = list(payload["data"]["joint_names"])
        self.rate_hz = payload["data"]["rate_hz"]
        self.total_it = int(payload["step"])
        self._restore_arguments(payload["arguments"])
        try:
            self.generator.set_state(payload["generator"])
        except RuntimeError:  # saved on another device type: a fresh, still seeded stream
            self.generator.manual_seed(self.config.seed + self.total_it)

    def _restore_arguments(self, arguments: dict[str, Any]) -> None:
        """Take over saved constructor arguments that are state, not sizes (LAPO: min_v)."""

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, device: str | torch.device | None = None,
                        replay_buffer: TransitionSource | None = None) -> OfflineAgent:
        """Rebuild a saved agent; without ``replay_buffer`` it can act, export and evaluate."""
        payload = read_checkpoint(path, cls.kind)
        config = cls.config_class.from_dict(payload["config"])
        arguments = payload["arguments"]
        # the weights come from the checkpoint, not from the pretrained file
        overrides = {k: v for k, v in replace(config, pretrained_path=None).to_dict().items()
                     if k not in arguments}
        agent = cls(**arguments, replay_buffer=replay_buffer, device=device,
                    statistics=DatasetStatistics.from_dict(payload["statistics"]),
                    joint_names=payload["data"]["joint_names"],
                    rate_hz=payload["data"]["rate_hz"], **overrides)
        agent.config = config
        agent.load(path)
        return agent
