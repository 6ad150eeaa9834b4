"""The training loop behind ``training/train.py``: data -> agent -> logs and checkpoints.

Run directory::

    RUN_DIR/config.yaml            resolved TrainConfig (what --resume continues)
    RUN_DIR/metrics.csv            train/* and val/* metrics by step
    RUN_DIR/tensorboard/           the same for TensorBoard
    RUN_DIR/checkpoints/last.pt    latest state (atomic), resumable after kill -9
    RUN_DIR/checkpoints/best.pt    lowest val/action_mse_normalized so far

Under ``torchrun`` every process trains on its own batches and gradients are averaged
(``distributed.py``); rank 0 validates, logs and writes checkpoints.
"""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

import lapo_ros
from lapo_ros.dataset.aloha import aloha_layout
from lapo_ros.dataset.episodes import load_sources
from lapo_ros.lapo.compute import DeviceError, resolve_device
from lapo_ros.lapo.data.buffer import MultimodalReplayBuffer, raw_to_batch
from lapo_ros.lapo.data.step_batches import step_batches
from lapo_ros.lapo.training import distributed
from lapo_ros.lapo.training.checkpoint import (
    TrainingCheckpointError,
    agent_class,
    read_training_record,
    save_training_checkpoint,
)
from lapo_ros.lapo.training.config import TrainConfig, TrainConfigError, save_train_config
from lapo_ros.lapo.training.log import MetricsLog

BEST_METRIC = "val/action_mse_normalized"
PROGRESS_KEYS = ("critic_loss", "vae_loss", "actor_loss", "bc_loss")
VAL_SEED = 7919


@dataclass
class TrainResult:
    """Where a run got: its step, checkpoints and best validation score."""

    run_dir: Path
    step: int
    last_checkpoint: Path
    best_checkpoint: Path | None
    best_score: float | None
    interrupted: bool = False
    is_main: bool = True  # False on torchrun ranks other than 0 (they write nothing)


def configured_device(name: str, local_rank: int = 0) -> torch.device:
    """``resolve_device`` with its errors as TrainConfigError."""
    try:
        return resolve_device(name, local_rank)
    except DeviceError as error:
        raise TrainConfigError(f"training config: {error}") from error


def training_device(name: str, context: distributed.DistributedContext) -> torch.device:
    """The device of this process, made current when it is a GPU."""
    device = configured_device(name, context.local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


def load_data(config: TrainConfig, device: torch.device
              ) -> tuple[MultimodalReplayBuffer, MultimodalReplayBuffer]:
    """(train, validation) buffers over disjoint episodes of ``config.data``."""
    aloha = aloha_layout(config.aloha_cameras, config.labels, config.assume_success,
                         joint_names=config.aloha_joint_names, rate_hz=config.aloha_rate_hz)
    sources = load_sources(config.data, aloha=aloha)
    buffer = MultimodalReplayBuffer(
        action_dim=int(sources[0].action.shape[1]), joint_dim=int(sources[0].joint.shape[1]),
        device=device, image_size=config.image_size, seed=config.seed,
    )
    buffer.add_sources(sources)
    if buffer.num_episodes < 2:
        raise TrainConfigError(
            f"data {config.data}: {buffer.num_episodes} episode(s); at least 2 are needed to "
            f"hold one out for validation"
        )
    return buffer.split(config.val_fraction, seed=config.seed)


class Trainer:
    """One training run; ``run()`` trains to ``config.steps`` and returns where it got."""

    def __init__(self, config: TrainConfig, *, resume: bool = False,
                 context: distributed.DistributedContext | None = None) -> None:
        self.config = config
        self.context = context or distributed.DistributedContext()
        self.run_dir = Path(config.out)
        self.checkpoint_dir = self.run_dir / "checkpoints"
        self.last_path = self.checkpoint_dir / "last.pt"
        self.best_path = self.checkpoint_dir / "best.pt"
        if not resume and self.last_path.exists():
            raise TrainConfigError(
                f"{self.run_dir} already holds a run ({self.last_path}); pass --resume to "
                f"continue it or choose another --out"
            )
        self.device = training_device(config.device, self.context)
        self.train_data, self.val_data = load_data(config, self.device)
        self.agent = agent_class(config.algo)(
            action_dim=self.train_data.action_dim, replay_buffer=self.train_data,
            device=self.device, **config.agent_overrides(),
        )
        self.step = 0
        self.best_score: float | None = None
        self.best_step: int | None = None
        if resume:
            self._restore()
            if self.step > config.steps:
                raise TrainConfigError(
                    f"{self.last_path}: the run is at step {self.step}, past steps="
                    f"{config.steps}; give a larger --steps to continue it"
                )
        distributed.broadcast_modules(self._modules(), self.context)
        self._hooks = distributed.average_gradients_before_step(self._optimizers(),
                                                                self.context)
        self._val_indices = self._validation_indices()
        self._stop_signal: int | None = None

    # ---------------------------------------------------------------- state
    def _modules(self) -> list[nn.Module]:
        """Every network of the agent (its ``modules`` record): what DDP keeps in sync."""
        return list(self.agent.modules.networks().values())

    def _optimizers(self) -> list[torch.optim.Optimizer]:
        return list(self.agent.modules.optimizers().values())

    def training_record(self) -> dict[str, Any]:
        """What a checkpoint needs beyond the agent: the run's step, best score, config and
        the identity of its training and held-out data (read by resume, export, evaluate)."""
        data = self.train_data
        return {
            "algo": self.config.algo,
            "step": self.step,
            "best_score": self.best_score,
            "best_step": self.best_step,
            "best_metric": BEST_METRIC,
            "config": self.config.to_dict(),
            "run_dir": str(self.run_dir.resolve()),
            "data_identity": data.data_identity,
            "val_data_identity": self.val_data.data_identity,
            "val_episodes": self.val_data.parent_episode_indices,
            "world_size": self.context.world_size,
            "lapo_ros_version": lapo_ros.__version__,
            "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }

    def _restore(self) -> None:
        if not self.last_path.is_file():
            raise TrainConfigError(f"{self.last_path}: no checkpoint to resume from")
        record = read_training_record(self.last_path)
        saved_identity = record.get("data_identity", {}).get("episode_ends_sha256")
        if saved_identity != self.train_data.data_identity["episode_ends_sha256"]:
            raise TrainingCheckpointError(
                f"{self.last_path}: trained on other episodes than {self.config.data} now "
                f"holds (the files changed since); start a new run"
            )
        if record.get("algo") != self.config.algo:
            raise TrainingCheckpointError(
                f"{self.last_path}: a {record.get('algo')!r} run, not {self.config.algo!r}"
            )
        self.agent.load(self.last_path)
        self.step = int(record["step"])
        self.best_score = record.get("best_score")
        self.best_step = record.get("best_step")
        if self.agent.total_it != self.step:
            raise TrainingCheckpointError(
                f"{self.last_path}: agent step {self.agent.total_it} != trainer step {self.step}"
            )

    # ---------------------------------------------------------------- loop
    def run(self) -> TrainResult:
        """Train from ``self.step`` to ``config.steps`` on step-indexed batches.

        Rank 0 writes the config, metrics (CSV + TensorBoard) every ``log_every`` steps,
        validates every ``val_every`` steps (``best.pt`` when ``val/action_mse_normalized``
        improves) and writes ``last.pt`` every ``checkpoint_every`` steps and at the end.
        SIGINT/SIGTERM finish the current step, write ``last.pt`` and return with
        ``interrupted`` set (a second signal stops at once); ``--resume`` continues there.
        """
        config, main = self.config, self.context.is_main
        log = None
        if main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            for stale in [*self.checkpoint_dir.glob(".last.pt.*"),
                          *self.checkpoint_dir.glob(".best.pt.*")]:
                stale.unlink()  # temporaries of a checkpoint write cut short by a kill
            save_train_config(config, self.run_dir)
            log = MetricsLog(self.run_dir, resume_step=self.step if self.step else None)
        previous = {sig: signal.signal(sig, self._on_signal)
                    for sig in (signal.SIGINT, signal.SIGTERM)}
        progress = tqdm(total=config.steps, initial=self.step, disable=not main,
                        dynamic_ncols=True, mininterval=1.0, desc=f"train {config.algo}")
        batches = step_batches(
            self.train_data, seed=config.seed, rank=self.context.rank,
            batch_size=config.batch_size, first_step=self.step, last_step=config.steps,
            device=self.device, num_workers=config.num_workers,
            discount=self.agent.return_discount, chunk_size=self.agent.chunk_size,
        )
        sums: dict[str, float] = {}
        count, started, postfix = 0, time.perf_counter(), {}
        try:
            for batch in batches:
                metrics = self.agent.train_step(batch)
                self.step += 1
                count += 1
                for key, value in metrics.items():
                    if key != "step":
                        sums[key] = sums.get(key, 0.0) + value
                progress.update(1)
                if self.step % config.log_every == 0 or self.step == config.steps:
                    rows = distributed.all_ranks_mean(
                        {f"train/{k}": v / count for k, v in sums.items()}, self.context)
                    elapsed = time.perf_counter() - started
                    rows["train/steps_per_s"] = count / elapsed if elapsed > 0 else 0.0
                    if log:
                        log.log(self.step, rows)
                    postfix.update({k.split("/")[1]: f"{v:.3g}" for k, v in rows.items()
                                    if k.split("/")[1] in PROGRESS_KEYS})
                    progress.set_postfix(postfix, refresh=False)
                    sums, count, started = {}, 0, time.perf_counter()
                if main and (self.step % config.val_every == 0 or self.step == config.steps):
                    scores = self.validate()
                    log.log(self.step, scores)
                    postfix["val"] = f"{scores[BEST_METRIC]:.3g}"
                    progress.set_postfix(postfix, refresh=False)
                    if self.best_score is None or scores[BEST_METRIC] < self.best_score:
                        self.best_score, self.best_step = scores[BEST_METRIC], self.step
                        save_training_checkpoint(self.agent, self.best_path,
                                                 self.training_record())
                if main and (self.step % config.checkpoint_every == 0
                             or self.step == config.steps):
                    save_training_checkpoint(self.agent, self.last_path, self.training_record())
                    log.flush()
                if distributed.any_rank(self._stop_signal is not None, self.context):
                    self._stop_signal = self._stop_signal or signal.SIGTERM
                    break
            if main and self._stop_signal is not None:
                save_training_checkpoint(self.agent, self.last_path, self.training_record())
        finally:
            progress.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            for hook in self._hooks:
                hook.remove()
            if log:
                log.close()
        drift = distributed.parameter_drift(self._modules(), self.context)
        if drift > 0.0:
            raise RuntimeError(f"torchrun ranks diverged: parameters differ by up to {drift:.3g}")
        return TrainResult(
            run_dir=self.run_dir, step=self.step, last_checkpoint=self.last_path,
            best_checkpoint=self.best_path if self.best_path.exists() else None,
            best_score=self.best_score, interrupted=self._stop_signal is not None,
            is_main=self.context.is_main,
        )

    def _on_signal(self, signum: int, frame) -> None:
        """Finish the current step, write last.pt, then stop (a second signal kills)."""
        if self._stop_signal is not None:
            raise KeyboardInterrupt
        self._stop_signal = signum

    # ---------------------------------------------------------------- validation
    def _validation_indices(self) -> np.ndarray:
        """A fixed set of held-out transitions, so scores are comparable across steps."""
        total = self.val_data.num_transitions
        wanted = min(total, self.config.val_batches * self.config.batch_size)
        rng = np.random.default_rng([self.config.seed, VAL_SEED])
        return np.sort(rng.choice(total, size=wanted, replace=False))

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Greedy-action error against recorded actions, whole chunks with ``chunk_size``
        > 1 (and Q/V statistics for LAPO)."""
        agent = self.agent
        policy = agent.deployable_policy()
        critic = getattr(agent, "critic", None)
        modes = [(m, m.training) for m in self._modules()]
        for module, _ in modes:
            module.eval()
        sampler = self.val_data.sampler(chunk_size=agent.chunk_size)
        sums: dict[str, float] = {}
        q_values, v_values = [], []
        try:
            for start in range(0, len(self._val_indices), self.config.batch_size):
                indices = self._val_indices[start:start + self.config.batch_size]
                raw = sampler.fill(indices, sampler.allocate(len(indices)))
                batch = raw_to_batch(raw, self.device, sampler.layout)
                predicted = policy(batch.image, batch.joint).float()
                error = predicted - batch.action
                normalized = (agent.action_scaler.normalize(predicted)
                              - agent.action_scaler.normalize(batch.action))
                sums["action_mse"] = sums.get("action_mse", 0.0) + float(error.pow(2).sum())
                sums["action_mae"] = sums.get("action_mae", 0.0) + float(error.abs().sum())
                sums["action_mse_normalized"] = (sums.get("action_mse_normalized", 0.0)
                                                 + float(normalized.pow(2).sum()))
                if critic is not None:
                    joint = agent.joint_normalizer(batch.joint)
                    feature = agent.obs_encoder(batch.image, joint)
                    q1, q2 = critic(feature, agent._action_target(batch.action))
                    q_values.append(torch.min(q1, q2).float().cpu())
                    v_values.append(critic.v(feature).float().cpu())
        finally:
            for module, training in modes:
                module.train(training)
        elements = len(self._val_indices) * self.train_data.action_dim * agent.chunk_size
        scores = {f"val/{k}": v / elements for k, v in sums.items()}
        if q_values:
            q, v = torch.cat(q_values), torch.cat(v_values)
            scores.update({
                "val/q_mean": float(q.mean()), "val/q_std": float(q.std()),
                "val/v_mean": float(v.mean()), "val/v_std": float(v.std()),
                "val/advantage_mean": float((q - v).mean()),
            })
        return scores


def train(config: TrainConfig, *, resume: bool = False) -> TrainResult:
    """Run ``config`` in this process (a torchrun rank when launched by torchrun)."""
    context = distributed.init_distributed(configured_device(config.device).type)
    try:
        return Trainer(config, resume=resume, context=context).run()
    finally:
        distributed.shutdown_distributed(context)
