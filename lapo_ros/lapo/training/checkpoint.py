"""Training checkpoints: the agent's own checkpoint file plus a ``training`` record.

A torch checkpoint is a zip archive; the record is one more JSON entry in it
(``<archive>/training.json``), added before the file is renamed into place, so writing a
checkpoint costs one write of the weights and reading the record reads no weights. The
record holds what the trainer needs to resume (step, best validation score, the
config, data identity, held-out episodes). What describes the policy (joint names, rate,
image size) is the agent's own and lives in its checkpoint. The file stays a valid agent
checkpoint: ``Agent.from_checkpoint`` loads it as is, and ``load_trained_agent`` loads an
agent's own ``save()`` file as well.
"""

from __future__ import annotations

import json
import os
import zipfile
from importlib import import_module
from pathlib import Path
from typing import Any

import torch

from lapo_ros.common.files import atomic_path
from lapo_ros.lapo.algorithms.checkpoint import CheckpointError, read_checkpoint

TRAINING_RECORD = "training.json"
AGENT_CLASSES = {
    "lapo": ("lapo_ros.lapo.algorithms.lapo", "MultimodalLatent"),
    "bc": ("lapo_ros.lapo.algorithms.bc", "BehaviorCloning"),
}


class TrainingCheckpointError(ValueError):
    """A checkpoint that cannot be used here; the message names the file and what is wrong."""


def agent_class(algo: str):
    """The agent class of ``algo`` (``lapo`` or ``bc``), imported when first asked for."""
    module, name = AGENT_CLASSES[algo]
    return getattr(import_module(module), name)


def save_training_checkpoint(agent: Any, path: str | os.PathLike, training: dict) -> None:
    """Atomically write ``agent.save`` output with the ``training`` record added."""
    with atomic_path(path) as tmp:
        agent.save(tmp)
        with zipfile.ZipFile(tmp, "a") as archive:
            prefix = archive.namelist()[0].split("/")[0]
            archive.writestr(f"{prefix}/{TRAINING_RECORD}", json.dumps(training, indent=1))


def read_training_record(path: str | os.PathLike) -> dict:
    """The ``training`` record of a checkpoint written by the trainer (weights not read)."""
    record = _training_record(Path(path))
    if record is None:
        raise TrainingCheckpointError(
            f"{path}: no training record; not a checkpoint written by training/train.py"
        )
    return record


def _training_record(path: Path) -> dict | None:
    """The record, or None when ``path`` is a checkpoint without one (an agent's save())."""
    if not path.is_file():
        raise TrainingCheckpointError(f"{path}: no such checkpoint")
    try:
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if n.endswith(f"/{TRAINING_RECORD}")]
            text = archive.read(names[0]).decode("utf-8") if names else None
    except zipfile.BadZipFile as error:
        raise TrainingCheckpointError(f"{path}: not a torch checkpoint ({error})") from error
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise TrainingCheckpointError(f"{path}: corrupt training record ({error})") from error


def load_trained_agent(path: str | os.PathLike, device: str | torch.device = "cpu"):
    """(agent, training record) from a trainer checkpoint, without any replay buffer; an
    agent's own ``save()`` file loads too, with an empty record."""
    record = _training_record(Path(path))
    try:
        algo = record.get("algo") if record is not None else _algo_of(read_checkpoint(path))
    except CheckpointError as error:
        raise TrainingCheckpointError(str(error)) from error
    if algo not in AGENT_CLASSES:
        raise TrainingCheckpointError(f"{path}: unknown algo {algo!r} in its training record")
    try:
        agent = agent_class(algo).from_checkpoint(path, device=device)
    except (ValueError, KeyError, RuntimeError) as error:
        raise TrainingCheckpointError(f"{path}: cannot rebuild the {algo} agent: {error}") \
            from error
    return agent, record or {}


def _algo_of(payload: dict) -> str | None:
    """The algo whose agent class wrote an agent checkpoint (its ``kind``)."""
    return next((algo for algo in AGENT_CLASSES if agent_class(algo).kind == payload["kind"]),
                None)
