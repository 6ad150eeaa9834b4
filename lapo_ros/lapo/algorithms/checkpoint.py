"""The agents' checkpoint file: one ``torch.save`` dict, readable with ``weights_only=True``.

Layout: ``format``, ``version``, ``kind`` (which agent), ``arguments`` (constructor
arguments), ``config`` (the agent config's ``to_dict``), ``statistics``
(``DatasetStatistics.to_dict``), ``data`` (the data's ``joint_names`` and ``rate_hz``),
``step``, ``modules`` (state_dicts of networks, targets and normalisers), ``optimizers``
(their state_dicts), and the agent's noise generator state.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from lapo_ros.common.files import atomic_path

CHECKPOINT_FORMAT = "lapo_ros.checkpoint"
CHECKPOINT_VERSION = 3
"""3: joint names and rate in ``data``, optimisers apart for every agent (BCConfig for BC);
2: z-scored actions, linear decoder and the critic's action head; 1: min/max + tanh."""


class CheckpointError(ValueError):
    """A checkpoint file that cannot be loaded into this agent; the message names file and key."""


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> None:
    """Write atomically: a crash never leaves a half-written checkpoint at ``path``."""
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def read_checkpoint(path: str | os.PathLike, kind: str | None = None) -> dict[str, Any]:
    """Load with ``weights_only=True`` and check it is a checkpoint of our format (of a
    ``kind`` agent, when given)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path!r}: no such file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # corrupt/foreign files raise several types
        raise CheckpointError(f"checkpoint {path!r}: cannot be read ({error})") from error
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"checkpoint {path!r}: not a lapo_ros checkpoint")
    if payload.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"checkpoint {path!r}: version {payload.get('version')!r}, this lapo_ros reads "
            f"{CHECKPOINT_VERSION}"
        )
    if kind is not None and payload.get("kind") != kind:
        raise CheckpointError(
            f"checkpoint {path!r}: holds a {payload.get('kind')!r} agent, expected {kind!r}"
        )
    return payload


def load_states(path: str, modules: dict[str, Any], states: dict[str, Any]) -> None:
    """``load_state_dict`` for every named module/optimizer, naming the one that fails."""
    for name, module in modules.items():
        if name not in states:
            if isinstance(module, torch.nn.Module) and not any(
                    value.numel() for value in module.state_dict().values()):
                continue  # nothing to restore (no critic folds, no episode seen yet)
            raise CheckpointError(f"checkpoint {path!r}: lacks {name!r}")
        try:
            module.load_state_dict(states[name])
        except (RuntimeError, ValueError, KeyError) as error:
            raise CheckpointError(
                f"checkpoint {path!r}: {name!r} does not fit this agent ({error})"
            ) from error
