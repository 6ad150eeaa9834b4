"""ALOHA / ACT episode files: camera names, joint names, rate and success labels.

ACT's ``record_sim_episodes.py`` (and gym-aloha) name the cameras ``left_wrist``,
``right_wrist`` and ``top``; the real-robot recorder ``cam_left_wrist``, ``cam_right_wrist``
and ``cam_high`` (plus ``cam_low``). Either set is recognised in a file; any other naming
needs ``cameras`` (``--aloha-cameras left=NAME,right=NAME,global=NAME`` in every tool,
``aloha_cameras`` in the training config). The files record 14 joints (6 + gripper per
arm) at 50 Hz without saying so: ALOHA's names and 50 Hz are the defaults, which
``joint_names`` and ``rate_hz`` (``--aloha-joint-names``, ``--aloha-rate-hz``) replace for
files without ``joint_names`` / ``rate_hz`` attributes. They carry no reward or success: an
episode's outcome comes from ``labels`` (file stem -> true/false, the labels YAML the bags
use), else a boolean file attribute ``success``, else ``assume_success`` when the user says
every episode succeeded.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from lapo_ros.common.images import CAMERA_ORDER
from lapo_ros.dataset.labels import load_labels
from lapo_ros.dataset.layout import DatasetReadError

CAMERA_SETS: dict[str, dict[str, str]] = {
    "ALOHA sim (ACT, gym-aloha)": {"left": "left_wrist", "right": "right_wrist",
                                   "global": "top"},
    "real ALOHA": {"left": "cam_left_wrist", "right": "cam_right_wrist", "global": "cam_high"},
}
"""The camera namings recognised in a file, by where they come from."""
JOINT_NAMES = [f"{side}_arm_{joint}" for side in ("left", "right")
               for joint in ("waist", "shoulder", "elbow", "forearm_roll", "wrist_angle",
                             "wrist_rotate", "gripper")]
"""gym-aloha's names of the 14 recorded joints (grippers normalised 0..1)."""
RATE_HZ = 50.0
CAMERAS_OPTION = "--aloha-cameras left=NAME,right=NAME,global=NAME (aloha_cameras in config)"
JOINT_NAMES_OPTION = "--aloha-joint-names NAME,NAME,... (aloha_joint_names in config)"
RATE_OPTION = "--aloha-rate-hz HZ (aloha_rate_hz in config)"


@dataclass
class AlohaLayout:
    """Where an ALOHA-style per-episode file keeps its data, and how to score it.

    Without ``reward_key`` in the file an episode gets 0 reward per step and
    ``success_reward`` on its last step when it succeeded. Every ALOHA episode ends in a
    terminal state (the task was finished or abandoned). ``cameras`` None: detected from
    the file (``CAMERA_SETS``); ``joint_names`` (None: ``JOINT_NAMES`` for 14 joints) and
    ``rate_hz``: used when the file records none.
    """

    cameras: dict[str, str] | None = None
    labels: dict[str, bool] = field(default_factory=dict)  # file stem -> success
    assume_success: bool = False  # unlabelled episodes succeeded (the user says so)
    joint_names: list[str] | None = None
    rate_hz: float = RATE_HZ
    joint_key: str = "observations/qpos"
    action_key: str = "action"
    image_group: str = "observations/images"
    reward_key: str = "reward"
    success_attr: str = "success"
    success_reward: float = 1.0

    def __post_init__(self) -> None:
        if self.cameras is not None and set(self.cameras) != set(CAMERA_ORDER):
            raise DatasetReadError(
                f"ALOHA cameras must map exactly {list(CAMERA_ORDER)} to camera names in the "
                f"file, got {sorted(self.cameras)}"
            )
        if self.joint_names is not None:
            _check_joint_names(self.joint_names)
        if not (math.isfinite(self.rate_hz) and self.rate_hz > 0):
            raise DatasetReadError(f"{RATE_OPTION} must be a number > 0, got {self.rate_hz}")

    def camera_names(self, present: Iterable[str]) -> dict[str, str]:
        """Camera -> name in the file: ``cameras`` when given, else the known set the file
        has; DatasetReadError listing the file's cameras when neither fits."""
        present = sorted(present)
        if self.cameras is not None:
            missing = {c: n for c, n in self.cameras.items() if n not in present}
            if missing:
                raise DatasetReadError(
                    f"no camera {sorted(missing.values())} under /{self.image_group} for "
                    f"{sorted(missing)} (mapping {self.cameras}); cameras in the file: "
                    f"{present}")
            return dict(self.cameras)
        for names in CAMERA_SETS.values():
            if set(names.values()) <= set(present):
                return dict(names)
        known = "; ".join(f"{origin}: {', '.join(names.values())}"
                          for origin, names in CAMERA_SETS.items())
        raise DatasetReadError(
            f"cameras in the file under /{self.image_group}: {present}, not a known ALOHA "
            f"naming ({known}); name them with {CAMERAS_OPTION}")


def parse_cameras(spec: str | dict[str, str] | None) -> dict[str, str] | None:
    """``left=NAME,right=NAME,global=NAME`` (or a mapping, or None) -> camera mapping."""
    if spec is None or isinstance(spec, dict):
        return spec
    cameras = {}
    for item in spec.split(","):
        camera, sep, name = item.partition("=")
        if not sep or not name.strip():
            raise DatasetReadError(
                f"ALOHA cameras: expected CAMERA=NAME for each of {list(CAMERA_ORDER)}, "
                f"got {item!r}")
        cameras[camera.strip()] = name.strip()
    return cameras


def parse_joint_names(spec: str | list[str] | None) -> list[str] | None:
    """``NAME,NAME,...`` (or a list, or None) -> joint names."""
    if spec is None or isinstance(spec, list):
        return spec
    return [name.strip() for name in spec.split(",")]


def _check_joint_names(names: list[str]) -> None:
    """DatasetReadError naming the option when ``names`` is empty, has an empty or a
    repeated name."""
    if not names or not all(name.strip() for name in names):
        raise DatasetReadError(f"{JOINT_NAMES_OPTION}: every joint needs a name, got {names}")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise DatasetReadError(f"{JOINT_NAMES_OPTION}: repeated name(s) {repeated}")


def aloha_layout(cameras: str | dict[str, str] | None = None,
                 labels_file: str | None = None, assume_success: bool = False, *,
                 joint_names: str | list[str] | None = None,
                 rate_hz: float | None = None) -> AlohaLayout:
    """The layout every tool builds from its options (``--aloha-cameras``, ``--labels``,
    ``--assume-success``, ``--aloha-joint-names``, ``--aloha-rate-hz``, or the same keys of
    the training config); ``rate_hz`` None: 50 Hz."""
    labels = load_labels(labels_file) if labels_file is not None else {}
    return AlohaLayout(cameras=parse_cameras(cameras), labels=labels,
                       assume_success=assume_success, joint_names=parse_joint_names(joint_names),
                       rate_hz=RATE_HZ if rate_hz is None else rate_hz)


def add_aloha_file_options(parser: argparse.ArgumentParser, default_note: str = "") -> None:
    """``--aloha-cameras``, ``--aloha-joint-names`` and ``--aloha-rate-hz``: how ALOHA/ACT
    files are read; ``default_note`` ends each default's description."""
    parser.add_argument(
        "--aloha-cameras", metavar="left=NAME,right=NAME,global=NAME",
        help="camera names under /observations/images in ALOHA/ACT files (default: detected "
             f"when they are the sim's or real ALOHA's{default_note})")
    parser.add_argument(
        "--aloha-joint-names", metavar="NAME,NAME,...",
        help="names of the joints of ALOHA/ACT files that record none, 14 for ALOHA's "
             f"(default: ALOHA's, left_arm_waist ... right_arm_gripper{default_note})")
    parser.add_argument(
        "--aloha-rate-hz", type=float, metavar="HZ",
        help=f"rate of ALOHA/ACT files that record none (default: {RATE_HZ:g}{default_note})")


def add_aloha_options(parser: argparse.ArgumentParser) -> None:
    """The ALOHA file options, ``--labels`` and ``--assume-success``, the same in every
    tool that trains or inspects."""
    add_aloha_file_options(parser)
    parser.add_argument(
        "--labels", metavar="YAML",
        help="success labels of ALOHA/ACT episode files: file stem -> true/false")
    parser.add_argument(
        "--assume-success", action="store_true", default=None,
        help="every ALOHA/ACT episode without a label or 'success' attribute succeeded")
