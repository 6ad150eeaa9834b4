"""The ALOHA sim wrapper's observation/action contract and the scripted experts of both scenes.

Skipped only where the optional extra ``lapo_ros[aloha]`` is not installed.
"""

from __future__ import annotations

import numpy as np
import pytest

EXTRA = "the ALOHA sim needs the optional extra lapo_ros[aloha] (make setup installs it)"
for module in ("gym_aloha", "dm_control", "mujoco"):
    pytest.importorskip(module, reason=EXTRA)

from lapo_ros.dataset.aloha import JOINT_NAMES as DATASET_JOINT_NAMES  # noqa: E402
from lapo_ros.sim.aloha.env import AlohaSimConfig, AlohaSimEnv  # noqa: E402
from lapo_ros.sim.aloha.experts import (  # noqa: E402
    InsertionExpert,
    InsertionExpertConfig,
    TransferCubeExpert,
    TransferCubeExpertConfig,
    make_expert,
)
from lapo_ros.sim.aloha.kinematics import (  # noqa: E402
    GripperPose,
    PlanningError,
    gripper_pose,
    joint_names,
    solve_arm,
)
from lapo_ros.sim.aloha.rollout import run_episode  # noqa: E402
from lapo_ros.sim.aloha.scene import JOINT_NAMES  # noqa: E402

START_ARM = [0.0, -0.96, 1.16, 0.0, -0.3, 0.0]  # ACT's start pose of each arm


def red_pixels(rgb: np.ndarray) -> int:
    pixels = rgb.astype(int)
    return int(np.sum((pixels[..., 0] > 150) & (pixels[..., 1] < 60) & (pixels[..., 2] < 60)))


@pytest.fixture(scope="module")
def env() -> AlohaSimEnv:
    return AlohaSimEnv(AlohaSimConfig(image_size=(48, 64), max_steps=30))


def test_observation_has_our_three_cameras_and_alohas_14_joints(env):
    obs, info = env.reset(0)
    assert set(obs) == {"left", "right", "global", "joint"}
    for camera in ("left", "right", "global"):
        assert obs[camera].shape == (48, 64, 3) and obs[camera].dtype == np.uint8
    assert not np.array_equal(obs["left"], obs["right"])
    assert not np.array_equal(obs["left"], obs["global"])
    assert red_pixels(obs["global"]) > 0, "the top camera does not see the red cube"
    assert obs["joint"].shape == (14,) and obs["joint"].dtype == np.float32
    assert list(JOINT_NAMES) == list(DATASET_JOINT_NAMES) == list(env.joint_names)
    for arm in (slice(0, 6), slice(7, 13)):
        np.testing.assert_allclose(obs["joint"][arm], START_ARM, atol=1e-6)
    assert 0.0 < obs["joint"][6] < 0.2 and 0.0 < obs["joint"][13] < 0.2  # nearly closed
    assert info == {"stage": 0, "max_stage": 0, "success": False, "steps": 0}
    assert env.rate_hz == 50.0


def test_the_seed_places_the_cube(env):
    first = env.reset(3)[0]["global"]
    again = env.reset(3)[0]["global"]
    other = env.reset(4)[0]["global"]
    assert np.array_equal(first, again) and not np.array_equal(first, other)


def test_actions_are_absolute_joint_targets_in_joint_name_order(env):
    obs, _ = env.reset(0)
    target = obs["joint"].astype(np.float64)
    target[JOINT_NAMES.index("left_arm_waist")] = 0.3
    target[JOINT_NAMES.index("right_arm_gripper")] = 1.0
    for _ in range(25):
        obs, stage, terminated, truncated, info = env.step(target)
    joints = obs["joint"]
    assert joints[JOINT_NAMES.index("left_arm_waist")] == pytest.approx(0.3, abs=0.03)
    assert abs(joints[JOINT_NAMES.index("right_arm_waist")]) < 0.01
    assert joints[JOINT_NAMES.index("right_arm_gripper")] > 0.9  # opened
    assert joints[JOINT_NAMES.index("left_arm_gripper")] < 0.2
    assert (stage, terminated, truncated, info["steps"]) == (0.0, False, False, 25)


def test_an_episode_is_truncated_at_max_steps_and_then_needs_a_reset(env):
    obs, _ = env.reset(0)
    hold = obs["joint"].astype(np.float64)
    for step in range(30):
        _, _, terminated, truncated, info = env.step(hold)
        assert not terminated and truncated == (step == 29)
    assert not info["success"] and info["max_stage"] == 0
    with pytest.raises(RuntimeError, match="reset"):
        env.step(hold)


def test_bad_actions_and_config_are_named(env):
    obs, _ = env.reset(0)
    with pytest.raises(ValueError, match="14 joint positions"):
        env.step(np.zeros(16))
    bad = obs["joint"].astype(np.float64)
    bad[JOINT_NAMES.index("right_arm_elbow")] = np.nan
    with pytest.raises(ValueError, match="right_arm_elbow"):
        env.step(bad)
    with pytest.raises(ValueError, match="task"):
        AlohaSimConfig(task="stack_cubes")
    with pytest.raises(ValueError, match="image_size"):
        AlohaSimConfig(image_size=(0, 64))
    with pytest.raises(ValueError, match="kind"):
        TransferCubeExpertConfig(kind="perfect")
    with pytest.raises(ValueError, match="drop_step"):
        TransferCubeExpertConfig(drop_step=100)
    with pytest.raises(ValueError, match="timeline"):
        InsertionExpertConfig(hold_step=200)
    with pytest.raises(ValueError, match="InsertionExpert needs the insertion task"):
        InsertionExpert(env, InsertionExpertConfig(), np.random.default_rng(0))


def test_inverse_kinematics_reaches_a_grasp_pose_and_refuses_an_unreachable_one():
    env = AlohaSimEnv(AlohaSimConfig(image_size=None))
    env.reset(0)
    physics = env.physics
    start = physics.named.data.qpos[joint_names("right")].copy()
    goal = GripperPose(tip=np.array([0.1, 0.5, 0.05]), pointing=np.array([-0.6, 0.0, -0.8]),
                       closing=np.array([0.0, -1.0, 0.0]))
    joints = solve_arm(physics, "right", goal, start)
    np.testing.assert_allclose(physics.named.data.qpos[joint_names("right")], start)
    physics.named.data.qpos[joint_names("right")] = joints
    physics.forward()
    reached = gripper_pose(physics, "right")
    np.testing.assert_allclose(reached.tip, goal.tip, atol=2e-3)
    assert reached.pointing @ goal.pointing == pytest.approx(1.0, abs=1e-3)
    with pytest.raises(PlanningError, match="right arm cannot reach"):
        solve_arm(physics, "right", GripperPose(np.array([-0.6, 0.5, 0.3]), goal.pointing,
                                                goal.closing), start)


@pytest.mark.parametrize("seed", [0, 7])
def test_the_scripted_expert_hands_the_cube_over(seed):
    env = AlohaSimEnv(AlohaSimConfig(image_size=None))
    expert = TransferCubeExpert(env, TransferCubeExpertConfig(), np.random.default_rng(seed))
    outcome = run_episode(env, expert, seed)
    assert outcome.success and outcome.max_stage == 4
    assert outcome.steps < env.config.max_steps
    # touched and lifted by the right gripper first, then taken by the left one in the air
    assert 1 in outcome.stages and outcome.stages.index(2) < outcome.stages.index(4)
    assert outcome.stages[-1] == 4 and outcome.stages[-2] == 2


@pytest.mark.parametrize(("kind", "max_stage"), [("wrong_grasp", 0), ("drop", 2)])
def test_the_failing_demonstrators_stop_where_they_fail(kind, max_stage):
    env = AlohaSimEnv(AlohaSimConfig(image_size=None))
    expert = TransferCubeExpert(env, TransferCubeExpertConfig(kind=kind),
                                np.random.default_rng(0))
    outcome = run_episode(env, expert, 0)
    assert not outcome.success and outcome.max_stage == max_stage
    assert outcome.steps == env.config.max_steps


def test_the_insertion_scene_has_the_same_contract():
    env = AlohaSimEnv(AlohaSimConfig(task="insertion", image_size=(48, 64), max_steps=3))
    obs, _ = env.reset(1)
    assert {k: v.shape for k, v in obs.items()} == {
        "left": (48, 64, 3), "right": (48, 64, 3), "global": (48, 64, 3), "joint": (14,)}
    assert red_pixels(obs["global"]) > 0, "the top camera does not see the red peg"
    hold = obs["joint"].astype(np.float64)
    results = [env.step(hold) for _ in range(3)]
    assert [r[1] for r in results] == [0.0] * 3 and results[-1][3]  # stage 0, truncated


def test_torch_can_be_imported_after_the_sim_has_rendered():
    """Mesa's EGL and triton's LLVM: the sim makes the order safe (this used to segfault)."""
    import subprocess
    import sys
    from pathlib import Path

    pytest.importorskip("torchvision")
    code = ("from lapo_ros.sim.aloha.env import AlohaSimConfig, AlohaSimEnv\n"
            "env = AlohaSimEnv(AlohaSimConfig(image_size=(8, 8)))\n"
            "env.reset(0)\n"
            "import torch, torchvision\n"
            "print(torchvision.models.resnet18().eval()(torch.zeros(1, 3, 32, 32)).shape)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=300, cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 0, result.stderr[-2000:]
    assert "torch.Size([1, 1000])" in result.stdout


@pytest.mark.parametrize("backend", ["egl", "osmesa"])
def test_each_cpu_renderer_draws_the_scene_and_exits_cleanly(backend, tmp_path):
    """MUJOCO_GL=egl (the default) and osmesa, each in a fresh process: the three cameras as
    the other backend draws them, and no traceback at exit (the env frees its contexts)."""
    import ctypes.util
    import os
    import subprocess
    import sys
    from pathlib import Path

    library = {"egl": "EGL", "osmesa": "OSMesa"}[backend]
    if ctypes.util.find_library(library) is None:
        pytest.skip(f"no lib{library} (Debian: libegl1 / libosmesa6; make setup installs "
                    f"them where it runs as root with apt-get)")
    code = ("import sys, numpy as np\n"
            "from lapo_ros.sim.aloha.env import AlohaSimConfig, AlohaSimEnv\n"
            "with AlohaSimEnv(AlohaSimConfig(image_size=(48, 64))) as env:\n"
            "    obs, _ = env.reset(3)\n"
            "    np.savez(sys.argv[1], **{k: obs[k] for k in ('left', 'right', 'global')})\n")
    out = tmp_path / f"{backend}.npz"
    result = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True,
                            text=True, timeout=300, cwd=Path(__file__).resolve().parents[1],
                            env={**{k: v for k, v in os.environ.items()
                                    if k != "PYOPENGL_PLATFORM"},  # this process set egl
                                 "MUJOCO_GL": backend})
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-2000:]
    images = np.load(out)
    with AlohaSimEnv(AlohaSimConfig(image_size=(48, 64))) as here:  # this process: egl
        reference, _ = here.reset(3)
    for camera in ("left", "right", "global"):
        assert images[camera].shape == (48, 64, 3)
        difference = np.abs(images[camera].astype(int) - reference[camera].astype(int))
        assert difference.mean() < 2.0, (camera, difference.mean())
    assert red_pixels(images["global"]) > 0  # the cube is in view


@pytest.mark.parametrize("seed", [0, 16])
def test_the_insertion_expert_pushes_the_peg_into_the_socket(seed):
    env = AlohaSimEnv(AlohaSimConfig(task="insertion", image_size=None))
    expert = make_expert(env, "expert", np.random.default_rng(seed))
    assert isinstance(expert, InsertionExpert)
    outcome = run_episode(env, expert, seed)
    assert outcome.success and outcome.steps < env.config.max_steps
    # both objects taken and lifted off the table before the peg reaches the pin
    assert outcome.stages.index(2) < outcome.stages.index(4) and outcome.stages[-1] == 4
    physics = env.physics
    peg = physics.named.data.qpos["red_peg_joint"][:3]
    socket = physics.named.data.qpos["blue_socket_joint"][:3]
    assert min(peg[2], socket[2]) > 0.15  # in the air
    np.testing.assert_allclose(peg[1:], socket[1:], atol=0.008)  # on the socket's axis


@pytest.mark.parametrize(("kind", "max_stage"), [("wrong_grasp", 0), ("drop", 2)])
def test_the_failing_insertion_demonstrators_stop_where_they_fail(kind, max_stage):
    env = AlohaSimEnv(AlohaSimConfig(task="insertion", image_size=None))
    outcome = run_episode(env, make_expert(env, kind, np.random.default_rng(0)), 0)
    assert not outcome.success and outcome.max_stage == max_stage
