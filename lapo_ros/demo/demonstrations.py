"""Heterogeneous demonstrations of the simulated reach task, recorded as real ros2 bags.

Each episode is driven by a scripted demonstrator (``expert``, ``noisy`` or
``wrong_target``) and recorded the way ``ros2 bag record`` would on the robot: the three
camera topics, ``joint_states``, the ``commands`` sent and the ``reward`` topic, one bag
per episode, plus a labels file (bag name -> success) for ``bag_to_hdf5``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from lapo_ros.bags.writing import BagTopics, EpisodeBagWriter
from lapo_ros.common.images import CAMERA_ORDER
from lapo_ros.dataset.layout import Episode
from lapo_ros.sim import JOINT_NAMES, DualArmReachEnv, SimConfig
from lapo_ros.sim.experts import DEMONSTRATOR_KINDS, DemonstratorConfig, ScriptedDemonstrator

START_NS = 1_700_000_000_000_000_000


@dataclass
class DemoMix:
    """How many episodes of each demonstrator kind, and from which seeds."""

    episodes: int = 60
    fractions: dict[str, float] = field(
        default_factory=lambda: {"expert": 0.3, "noisy": 0.15, "wrong_target": 0.55})
    seed: int = 0  # episode i uses layout seed ``seed + i``

    def kinds(self) -> list[str]:
        """Demonstrator kind of each episode: counts as close to the fractions as the
        episode count allows, in a seeded random order."""
        unknown = sorted(set(self.fractions) - set(DEMONSTRATOR_KINDS))
        if unknown:
            raise ValueError(f"unknown demonstrator kind {unknown[0]!r}; known: "
                             f"{', '.join(DEMONSTRATOR_KINDS)}")
        shares = np.array(list(self.fractions.values()), dtype=float)
        if shares.sum() <= 0 or shares.min() < 0:
            raise ValueError(f"demonstrator fractions must be >= 0 with a positive sum, got "
                             f"{self.fractions}")
        exact = shares / shares.sum() * self.episodes
        counts = np.floor(exact).astype(int)
        for index in np.argsort(counts - exact)[: self.episodes - counts.sum()]:
            counts[index] += 1
        kinds = np.repeat(list(self.fractions), counts)
        return [str(k) for k in np.random.default_rng(self.seed).permutation(kinds)]


@dataclass
class RecordedEpisode:
    """One demonstration: per-step observations, the commands sent and rewards."""

    kind: str
    seed: int
    images: dict[str, np.ndarray]  # camera -> (T,H,W,3) uint8
    joint: np.ndarray  # (T,16)
    command: np.ndarray  # (T,16)
    reward: np.ndarray  # (T,)
    success: bool
    terminal: bool

    def to_episode(self) -> Episode:
        """The same steps as an HDF5 episode (the direct path, without bags)."""
        return Episode(left_image=self.images["left"], right_image=self.images["right"],
                       global_image=self.images["global"], joint=self.joint.astype(np.float32),
                       action=self.command.astype(np.float32),
                       reward=self.reward.astype(np.float32), terminal=self.terminal)


def record_episode(env: DualArmReachEnv, kind: str, seed: int) -> RecordedEpisode:
    """Run one scripted episode in ``env`` from layout ``seed``."""
    obs, _ = env.reset(seed)
    demonstrator = ScriptedDemonstrator(env, DemonstratorConfig(kind=kind),
                                        np.random.default_rng(seed + 7919))
    demonstrator.reset()
    frames = {camera: [] for camera in CAMERA_ORDER}
    joints, commands, rewards = [], [], []
    while True:
        command = demonstrator.act(obs["joint"].astype(np.float64))
        for camera in CAMERA_ORDER:
            frames[camera].append(obs[camera])
        joints.append(obs["joint"])
        commands.append(command)
        obs, reward, terminated, truncated, info = env.step(command)
        rewards.append(reward)
        if terminated or truncated:
            break
    return RecordedEpisode(
        kind=kind, seed=seed, images={c: np.stack(f) for c, f in frames.items()},
        joint=np.stack(joints), command=np.stack(commands), reward=np.array(rewards),
        success=bool(info["success"]), terminal=bool(terminated))


def iter_demonstrations(mix: DemoMix, sim: SimConfig) -> Iterator[RecordedEpisode]:
    env = DualArmReachEnv(sim)
    for index, kind in enumerate(mix.kinds()):
        yield record_episode(env, kind, mix.seed + index)


def write_episode_bag(path: str | os.PathLike, episode: RecordedEpisode, rate_hz: float,
                      *, storage: str = "sqlite3", start_ns: int = START_NS,
                      joint_names: Sequence[str] = JOINT_NAMES) -> Path:
    """Record ``episode`` as a ros2 bag at ``path`` (cameras, joint_states under
    ``joint_names``, commands, reward)."""
    period_ns = int(round(1e9 / rate_hz))
    topics = BagTopics(cameras={c: f"/{c}/image_raw" for c in CAMERA_ORDER},
                       joint_states="/joint_states", command="/commands", reward="/reward")
    with EpisodeBagWriter(path, storage=storage, topics=topics) as writer:
        for step in range(len(episode.reward)):
            stamp = start_ns + step * period_ns
            for camera in CAMERA_ORDER:
                writer.write_image(camera, stamp, episode.images[camera][step])
            writer.write_joint_state(stamp, joint_names, episode.joint[step])
            # stamped with the observation they answer, so bag_to_hdf5 pairs them exactly
            writer.write_command(stamp, episode.command[step])
            writer.write_reward(stamp, float(episode.reward[step]))
    return Path(path)


@dataclass
class DemoBags:
    """What ``record_demonstration_bags`` wrote."""

    bags: list[Path]
    labels_file: Path
    kinds: list[str]
    successes: list[bool]
    steps: int


def record_demonstration_bags(
    out_dir: str | os.PathLike, mix: DemoMix, sim: SimConfig, *, storage: str = "sqlite3",
    progress: Callable[[RecordedEpisode], None] | None = None,
) -> DemoBags:
    """One bag per episode under ``out_dir`` (must not hold bags yet) and ``labels.yaml``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    bags, kinds, successes, labels, steps = [], [], [], {}, 0
    for index, episode in enumerate(iter_demonstrations(mix, sim)):
        name = f"demo_{index:03d}_{episode.kind}"
        bag = out_dir / name
        if bag.exists():
            raise FileExistsError(f"{bag}: bag folder exists; record into an empty folder")
        write_episode_bag(bag, episode, sim.rate_hz, storage=storage,
                          start_ns=START_NS + index * 1_000_000_000_000)
        bags.append(bag)
        kinds.append(episode.kind)
        successes.append(episode.success)
        labels[name] = episode.success
        steps += len(episode.reward)
        if progress is not None:
            progress(episode)
    labels_file = out_dir / "labels.yaml"
    labels_file.write_text(yaml.safe_dump(labels, sort_keys=True))
    return DemoBags(bags, labels_file, kinds, successes, steps)


def conversion_config(sim: SimConfig, image_size: tuple[int, int] | None = None) -> dict:
    """``bag_to_hdf5`` settings for the demo bags: the sim's rate, ``image_size`` (default:
    the cameras'; smaller sizes are resized as ``policy_node`` will resize them), and the
    per-step ``/reward`` topic. The last step of each bag is terminal: demonstrations end
    by touching a target (success or failure); the rare timeout is treated alike."""
    return {
        "rate_hz": sim.rate_hz,
        "image_size": list(image_size or sim.image_size),
        "joint_names": list(JOINT_NAMES),
        "ros_distro": "jazzy",
        "reward": {"source": "topic", "topic": "/reward", "topic_terminal": True},
    }
