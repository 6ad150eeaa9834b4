"""The reach task: touch the red target, not the blue one.

Two discs lie in the same half of the table, one near and one far; the arm on that side
must touch the red one (the goal). Side, positions and which disc is red are random and
visible only in the camera images, so a policy that averages demonstrations of the two
discs ends up between them. Success: a fingertip within ``success_radius`` of the
red disc. Failure: a fingertip touches the blue disc. Reward: +1 on success, -1 on failure,
plus a small potential-based progress term towards the goal (1 per metre, a few tenths
per episode): the outcome dominates the return, as in the success labels recorded on a
robot, so a demonstration's return says how it ended more than how far its target was.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lapo_ros.sim.rendering import Disc

GOAL_COLOUR = (220, 40, 40)
DISTRACTOR_COLOUR = (40, 80, 220)


@dataclass
class TaskConfig:
    """Target placement, success test and reward shaping of the reach task."""

    target_radius: float = 0.045  # m, disc radius
    target_height: float = 0.01  # m, disc top above the table
    success_radius: float = 0.06  # m, fingertip to disc top centre
    x_range: tuple[float, float] = (0.20, 0.32)  # |x| of each target (both in one half)
    near_y: tuple[float, float] = (0.28, 0.34)  # y of the near target
    far_y: tuple[float, float] = (0.50, 0.56)  # y of the far target
    progress_scale: float = 1.0  # reward per metre of approach to the goal
    success_bonus: float = 1.0
    failure_penalty: float = 1.0


@dataclass
class TargetLayout:
    """Where the goal and the distractor are in one episode."""

    goal: np.ndarray  # (3,) top centre of the red disc
    distractor: np.ndarray  # (3,) top centre of the blue disc

    @property
    def goal_arm(self) -> str:
        """The arm on the targets' side of the table."""
        return "left" if self.goal[0] < 0 else "right"


@dataclass
class StepOutcome:
    reward: float
    success: bool
    failure: bool
    goal_distance: float


class ReachTask:
    """Samples target layouts and scores fingertip positions against them."""

    def __init__(self, config: TaskConfig | None = None):
        self.config = config or TaskConfig()

    def sample_layout(self, rng: np.random.Generator) -> TargetLayout:
        c = self.config
        side = -1.0 if rng.random() < 0.5 else 1.0
        positions = [np.array([side * rng.uniform(*c.x_range), rng.uniform(*y_range),
                               c.target_height]) for y_range in (c.near_y, c.far_y)]
        goal_index = int(rng.integers(2))
        return TargetLayout(goal=positions[goal_index], distractor=positions[1 - goal_index])

    def discs(self, layout: TargetLayout) -> list[Disc]:
        r = self.config.target_radius
        return [Disc(layout.goal, r, GOAL_COLOUR), Disc(layout.distractor, r, DISTRACTOR_COLOUR)]

    def goal_distance(self, layout: TargetLayout, tips: list[np.ndarray]) -> float:
        return float(min(np.linalg.norm(tip - layout.goal) for tip in tips))

    def score(self, layout: TargetLayout, tips: list[np.ndarray], previous_distance: float
              ) -> StepOutcome:
        """Reward, success and failure after a step that left the fingertips at ``tips``."""
        c = self.config
        distance = self.goal_distance(layout, tips)
        success = distance <= c.success_radius
        failure = (not success) and min(
            np.linalg.norm(tip - layout.distractor) for tip in tips) <= c.success_radius
        reward = c.progress_scale * (previous_distance - distance)
        reward += c.success_bonus * success - c.failure_penalty * failure
        return StepOutcome(float(reward), bool(success), bool(failure), distance)
