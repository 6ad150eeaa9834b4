"""Learning core (torch): ``algorithms/`` (agent base, LAPO, BC, configs, checkpoint file),
``models/`` (networks, normalisation, deployable policy), ``data/`` (replay buffer, batches,
training batches), ``training/`` (trainer, run config, run checkpoints, log, distributed),
``compute.py`` (device, precision, optimiser, targets), ``export.py``, ``evaluation.py``.
Within it, each layer imports only the ones before it (compute, data, models, algorithms,
training, export, evaluation).

The public names below are imported lazily so that
``from lapo_ros.lapo import MultimodalReplayBuffer`` does not build networks, and tools that
only need one part do not load the others.
"""

from importlib import import_module

_EXPORTS = {
    "ResNet18Encoder": "lapo_ros.lapo.models.networks",
    "ImageJointEncoder": "lapo_ros.lapo.models.networks",
    "Actor": "lapo_ros.lapo.models.networks",
    "ActorVAE": "lapo_ros.lapo.models.networks",
    "Critic": "lapo_ros.lapo.models.networks",
    "MultimodalLatent": "lapo_ros.lapo.algorithms.lapo",
    "BehaviorCloning": "lapo_ros.lapo.algorithms.bc",
    "LAPOConfig": "lapo_ros.lapo.algorithms.config",
    "BCConfig": "lapo_ros.lapo.algorithms.config",
    "DeployablePolicy": "lapo_ros.lapo.models.policy",
    "MultimodalReplayBuffer": "lapo_ros.lapo.data.buffer",
    "TransitionBatch": "lapo_ros.lapo.data.batch",
    "DatasetStatistics": "lapo_ros.lapo.data.batch",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'lapo_ros.lapo' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
