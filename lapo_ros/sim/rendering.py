"""The three RGB cameras of the simulated scene: left wrist, right wrist and global.

A tiny painter's-algorithm renderer: the table is ray-cast per pixel (a checkered plane,
so motion is visible), targets are discs on the table, arm links are capsules; primitives
are drawn far to near with OpenCV. Deterministic, about a millisecond per camera at 64 px.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from lapo_ros.sim.dual_arm import ArmPose

TABLE_HALF_X = 0.55
TABLE_Y = (-0.15, 0.80)
TABLE_COLOURS = (np.array([196, 178, 150]), np.array([176, 158, 130]))
FLOOR_COLOUR = np.array([70, 74, 82])
SKY_COLOUR = np.array([150, 170, 190])
LINK_COLOURS = {"left": (60, 120, 60), "right": (120, 60, 120)}
FINGER_COLOUR = (40, 40, 40)
NEAR = 0.02


@dataclass
class Camera:
    """A pinhole camera: position, rotation (columns = camera x right, y down, z forward)."""

    position: np.ndarray
    rotation: np.ndarray
    fov_deg: float

    @classmethod
    def looking_at(cls, position, target, up=(0.0, 0.0, 1.0), fov_deg=60.0) -> Camera:
        position = np.asarray(position, float)
        forward = np.asarray(target, float) - position
        forward /= np.linalg.norm(forward)
        right = np.cross(forward, np.asarray(up, float))
        right /= np.linalg.norm(right)
        down = np.cross(forward, right)
        return cls(position, np.stack([right, down, forward], axis=1), fov_deg)


@dataclass
class Disc:
    """A coloured disc lying on the table (a target)."""

    centre: np.ndarray  # (3,) top centre
    radius: float
    colour: tuple[int, int, int]


def wrist_camera(pose: ArmPose, fov_deg: float = 100.0) -> Camera:
    """Camera on the wrist looking along the fingers; image down is the hand's +y axis."""
    hand = pose.hand_rotation
    forward = hand[:, 2]
    down = hand[:, 1]
    right = np.cross(down, forward)
    position = pose.wrist + hand[:, 2] * 0.02 + hand[:, 1] * 0.03
    return Camera(position, np.stack([right, down, forward], axis=1), fov_deg)


GLOBAL_CAMERA = Camera.looking_at((0.0, -0.05, 1.0), (0.0, 0.40, 0.0), fov_deg=64.0)


class SceneRenderer:
    """Renders the scene for any camera at a fixed image size (height, width)."""

    def __init__(self, image_size: tuple[int, int] = (64, 64)):
        self.height, self.width = image_size
        self._rays = {}  # fov -> (H,W,3) ray directions in the camera frame

    def _camera_rays(self, fov_deg: float) -> np.ndarray:
        if fov_deg not in self._rays:
            focal = self._focal(fov_deg)
            u = (np.arange(self.width) + 0.5 - self.width / 2) / focal
            v = (np.arange(self.height) + 0.5 - self.height / 2) / focal
            uu, vv = np.meshgrid(u, v)
            self._rays[fov_deg] = np.stack([uu, vv, np.ones_like(uu)], axis=-1)
        return self._rays[fov_deg]

    def _focal(self, fov_deg: float) -> float:
        return 0.5 * self.width / np.tan(np.radians(fov_deg) / 2)

    def render(self, camera: Camera, arms: dict[str, ArmPose], discs: list[Disc]) -> np.ndarray:
        """HxWx3 uint8 RGB image of the table, targets and arms seen by ``camera``."""
        image = self._background(camera)
        focal = self._focal(camera.fov_deg)
        centre = np.array([self.width / 2, self.height / 2])

        def project(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            local = (np.atleast_2d(points) - camera.position) @ camera.rotation
            depth = local[:, 2]
            pixels = local[:, :2] / np.maximum(depth, NEAR)[:, None] * focal + centre
            return pixels, depth

        shapes = []  # (depth, draw function)
        for disc in discs:
            angles = np.linspace(0, 2 * np.pi, 20, endpoint=False)
            rim = disc.centre + disc.radius * np.stack(
                [np.cos(angles), np.sin(angles), np.zeros_like(angles)], axis=1)
            pixels, depth = project(rim)
            if np.all(depth > NEAR):
                shapes.append((float(depth.mean()), _polygon(pixels, disc.colour)))
        for arm, pose in arms.items():
            pixels, depth = project(pose.points)
            for i in range(len(pose.points) - 1):
                if min(depth[i], depth[i + 1]) <= NEAR:
                    continue
                width = max(1, round(focal * 0.025 / max(depth[i], depth[i + 1])))
                mid = 0.5 * (depth[i] + depth[i + 1])
                shapes.append((mid, _segment(pixels[i], pixels[i + 1], width,
                                             LINK_COLOURS[arm])))
            for sign in (-1.0, 1.0):
                offset = pose.hand_rotation[:, 0] * sign * (0.5 * pose.gripper + 0.005)
                finger = np.stack([pose.wrist + offset + 0.6 * (pose.tip - pose.wrist),
                                   pose.tip + offset])
                f_pixels, f_depth = project(finger)
                if np.all(f_depth > NEAR):
                    width = max(1, round(focal * 0.008 / f_depth.max()))
                    shapes.append((float(f_depth.mean()) - 1e-3,
                                   _segment(f_pixels[0], f_pixels[1], width, FINGER_COLOUR)))
        for _, draw in sorted(shapes, key=lambda item: -item[0]):
            draw(image)
        return image

    def _background(self, camera: Camera) -> np.ndarray:
        rays = self._camera_rays(camera.fov_deg) @ camera.rotation.T
        dz = rays[..., 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            distance = -camera.position[2] / dz
        hits = (dz < -1e-6) & (distance > 0)
        x = camera.position[0] + distance * rays[..., 0]
        y = camera.position[1] + distance * rays[..., 1]
        on_table = hits & (np.abs(x) <= TABLE_HALF_X) & (y >= TABLE_Y[0]) & (y <= TABLE_Y[1])
        checker = ((np.floor(np.nan_to_num(x) / 0.1) + np.floor(np.nan_to_num(y) / 0.1)) % 2)
        image = np.where(hits[..., None], FLOOR_COLOUR, SKY_COLOUR)
        table = np.where(checker[..., None] > 0, TABLE_COLOURS[0], TABLE_COLOURS[1])
        image = np.where(on_table[..., None], table, image)
        return np.ascontiguousarray(image.astype(np.uint8))


_COORD_LIMIT = 1 << 14  # keep far-off vertices inside OpenCV's fixed-point range


def _polygon(pixels: np.ndarray, colour):
    points = np.clip(np.round(pixels * 16), -_COORD_LIMIT, _COORD_LIMIT).astype(np.int32)

    def draw(image: np.ndarray) -> None:
        cv2.fillPoly(image, [points], colour, lineType=cv2.LINE_AA, shift=4)

    return draw


def _segment(start: np.ndarray, end: np.ndarray, width: int, colour):
    p0 = tuple(int(v) for v in np.clip(np.round(start * 16), -_COORD_LIMIT, _COORD_LIMIT))
    p1 = tuple(int(v) for v in np.clip(np.round(end * 16), -_COORD_LIMIT, _COORD_LIMIT))

    def draw(image: np.ndarray) -> None:
        cv2.line(image, p0, p1, colour, width, lineType=cv2.LINE_AA, shift=4)

    return draw
