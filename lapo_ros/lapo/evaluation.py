"""Open-loop evaluation of a policy file on recorded episodes, before it touches the arm.

The policy file runs exactly as the node runs it (onnxruntime or TorchScript, its own
metadata); each recorded observation is fed in and the predicted action is compared with
the recorded one, per joint, in robot units. Images of another size than the policy's
are resized with ``lapo_ros.common.images.resize_rgb``, the node's own path.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lapo_ros.common.files import atomic_path
from lapo_ros.common.images import resize_rgb
from lapo_ros.common.policy_file import PolicyMetadata
from lapo_ros.dataset.aloha import AlohaLayout
from lapo_ros.dataset.layout import Episode

PolicyRunner = Callable[[np.ndarray, np.ndarray], np.ndarray]


class EvaluationError(ValueError):
    """Data that does not fit the policy (dimensions, cameras); the message says which."""


@dataclass
class EpisodePrediction:
    """The policy's actions over one recorded episode, beside the recorded ones."""

    name: str
    predicted: np.ndarray  # (T, A) robot units
    recorded: np.ndarray  # (T, A)


@dataclass
class JointError:
    """Per-joint action error over all evaluated steps (robot units)."""

    name: str
    mae: float
    rmse: float
    max_abs: float
    recorded_std: float

    @property
    def relative_rmse(self) -> float:
        """RMSE over the recorded action's std: < 1 beats predicting the mean."""
        return self.rmse / self.recorded_std if self.recorded_std > 0 else math.nan


def predict_episode(
    run: PolicyRunner,
    metadata: PolicyMetadata,
    episode: Episode,
    name: str,
    batch_size: int = 64,
) -> EpisodePrediction:
    """Run the policy over every step of ``episode`` (batched); robot units in and out.
    A chunk policy is scored by each chunk's first action (what is commanded at the
    observation's own tick)."""
    if episode.joint.shape[1] != metadata.joint_dim:
        raise EvaluationError(
            f"{name}: joints have {episode.joint.shape[1]} values, the policy expects "
            f"{metadata.joint_dim} ({', '.join(metadata.joint_names)})"
        )
    if episode.action.shape[1] != metadata.action_dim:
        raise EvaluationError(
            f"{name}: recorded actions have {episode.action.shape[1]} values, the policy "
            f"outputs {metadata.action_dim}"
        )
    size = tuple(metadata.image_size)
    predictions = []
    for start in range(0, len(episode), batch_size):
        stop = min(start + batch_size, len(episode))
        image = np.stack([_stacked_frame(episode, t, size) for t in range(start, stop)])
        joint = np.ascontiguousarray(episode.joint[start:stop], dtype=np.float32)
        action = np.asarray(run(image, joint), dtype=np.float32)
        predictions.append(action[:, 0] if metadata.chunk_size > 1 else action)
    predicted = np.concatenate(predictions)
    if not np.all(np.isfinite(predicted)):
        raise EvaluationError(f"{name}: the policy returned NaN or inf")
    return EpisodePrediction(name, predicted, np.asarray(episode.action, dtype=np.float32))


def _stacked_frame(episode: Episode, t: int, size: tuple[int, int]) -> np.ndarray:
    cameras = (episode.left_image[t], episode.right_image[t], episode.global_image[t])
    return np.concatenate([resize_rgb(np.asarray(c), size).transpose(2, 0, 1) for c in cameras])


def joint_errors(predictions: Iterable[EpisodePrediction], names: list[str]) -> list[JointError]:
    """Per-joint MAE / RMSE / max |error| over all steps of all episodes."""
    predictions = list(predictions)
    predicted = np.concatenate([p.predicted for p in predictions]).astype(np.float64)
    recorded = np.concatenate([p.recorded for p in predictions]).astype(np.float64)
    error = predicted - recorded
    return [
        JointError(
            name=name,
            mae=float(np.mean(np.abs(error[:, j]))),
            rmse=float(np.sqrt(np.mean(error[:, j] ** 2))),
            max_abs=float(np.max(np.abs(error[:, j]))),
            recorded_std=float(np.std(recorded[:, j])),
        )
        for j, name in enumerate(names)
    ]


def format_error_table(errors: list[JointError]) -> str:
    """A markdown table, one row per joint plus the mean over joints."""
    lines = [
        "| joint | MAE | RMSE | max abs | recorded std | RMSE / std |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for e in errors:
        lines.append(f"| {e.name} | {e.mae:.4g} | {e.rmse:.4g} | {e.max_abs:.4g} | "
                     f"{e.recorded_std:.4g} | {e.relative_rmse:.3f} |")
    relative = [e.relative_rmse for e in errors if math.isfinite(e.relative_rmse)]
    mean_relative = f"{np.mean(relative):.3f}" if relative else "n/a"
    lines.append(
        f"| **mean** | {np.mean([e.mae for e in errors]):.4g} | "
        f"{np.mean([e.rmse for e in errors]):.4g} | {max(e.max_abs for e in errors):.4g} | "
        f"| {mean_relative} |"
    )
    return "\n".join(lines)


def write_error_csv(errors: list[JointError], path: Path) -> None:
    """One row per joint, written atomically."""
    rows = [{"joint": e.name, "mae": e.mae, "rmse": e.rmse, "max_abs": e.max_abs,
             "recorded_std": e.recorded_std, "relative_rmse": e.relative_rmse} for e in errors]
    with atomic_path(path) as tmp, tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def plot_episode(
    prediction: EpisodePrediction, names: list[str], path: Path, rate_hz: float | None = None
) -> None:
    """PNG: one panel per joint, recorded vs predicted action over the episode."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    steps = np.arange(len(prediction.recorded))
    time_axis = steps / rate_hz if rate_hz else steps
    columns = min(4, len(names))
    rows = math.ceil(len(names) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 2.2 * rows),
                                sharex=True, squeeze=False)
    for j, name in enumerate(names):
        axis = axes[j // columns][j % columns]
        axis.plot(time_axis, prediction.recorded[:, j], label="recorded", color="black", lw=1.2)
        axis.plot(time_axis, prediction.predicted[:, j], label="policy", color="tab:orange",
                  lw=1.0)
        axis.set_title(name, fontsize=9)
        axis.tick_params(labelsize=7)
    for j in range(len(names), rows * columns):
        axes[j // columns][j % columns].axis("off")
    axes[0][0].legend(fontsize=7)
    figure.supxlabel("time (s)" if rate_hz else "step", fontsize=9)
    figure.suptitle(f"{prediction.name}: policy vs recorded actions", fontsize=10)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=80, format="png")
    plt.close(figure)


@dataclass
class EvaluationReport:
    """What ``training/evaluate.py`` prints and wrote."""

    errors: list[JointError]
    table: str
    episodes: list[str]
    files: list[Path]


def evaluate_policy_file(
    policy_path: str | Path,
    data: str | Path | list[str | Path],
    out_dir: str | Path,
    *,
    episodes: list[int] | None = None,
    plots: int = 1,
    batch_size: int = 64,
    aloha: AlohaLayout | None = None,
) -> EvaluationReport:
    """Run ``policy_path`` over recorded episodes; write errors.csv, errors.md and PNGs.

    Outputs are written only after every episode was evaluated. ALOHA/ACT files need no
    success labels here (only actions are compared).
    """
    from lapo_ros.dataset.episodes import load_sources
    from lapo_ros.lapo.data.buffer import MultimodalReplayBuffer
    from lapo_ros.lapo.export import load_policy_runner, read_policy_metadata

    metadata = read_policy_metadata(policy_path)
    sources = load_sources(data, aloha=aloha, require_labels=False)
    for source in sources:
        for what, found, wanted in (("joints", source.joint.shape[1], metadata.joint_dim),
                                    ("actions", source.action.shape[1], metadata.action_dim)):
            if found != wanted:
                raise EvaluationError(
                    f"{source.name}: {found} {what} per step, the policy expects {wanted} "
                    f"({policy_path})"
                )
    height, width = metadata.image_size
    buffer = MultimodalReplayBuffer(
        action_dim=metadata.action_dim, joint_dim=metadata.joint_dim, image_size=max(height, width)
    )
    buffer.add_sources(sources)
    data_names = buffer.joint_names
    named = any(source.joint_names for source in buffer.sources)
    if named and data_names != metadata.joint_names:
        raise EvaluationError(
            f"{data}: joint_names {data_names} differ from the policy's {metadata.joint_names} "
            f"(order matters)"
        )
    chosen = list(range(buffer.num_episodes)) if episodes is None else list(episodes)
    bad = [i for i in chosen if not 0 <= i < buffer.num_episodes]
    if bad:
        raise EvaluationError(f"{data}: no episode(s) {bad}; it holds {buffer.num_episodes}")
    run = load_policy_runner(policy_path)
    predictions = [
        predict_episode(run, metadata, buffer.episode(i), f"episode {i}", batch_size)
        for i in chosen
    ]
    names = metadata.command_names
    errors = joint_errors(predictions, names)
    table = format_error_table(errors)
    out_dir = Path(out_dir)
    files = [out_dir / "errors.csv", out_dir / "errors.md"]
    write_error_csv(errors, files[0])
    with atomic_path(files[1]) as tmp:
        tmp.write_text(f"Policy {policy_path} on {data}, episodes {chosen}\n\n{table}\n")
    for index, prediction in zip(chosen[:plots], predictions[:plots], strict=False):
        files.append(out_dir / f"episode_{index}.png")
        plot_episode(prediction, names, files[-1], metadata.rate_hz)
    return EvaluationReport(errors, table, [p.name for p in predictions], files)
