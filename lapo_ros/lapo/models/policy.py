"""The greedy policy as one ``nn.Module``: robot-unit observation in, robot-unit action out.

``DeployablePolicy`` is what ``export.py`` traces or scripts into a policy file (contract:
``image`` uint8 [B, 9, H, W], ``joint`` float32 [B, J] -> ``action`` float32 [B, A], or
[B, h, A] for chunks of h actions; ``lapo_ros.common.policy_file``), and
what ``select_action`` runs, so the exported file and the agent compute the same thing.
All normalisation is inside; no data-dependent Python control flow.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from lapo_ros.common.images import ImageConversionError, resize_rgb, stack_cameras
from lapo_ros.lapo.models.networks import Actor, ActorVAE, ImageJointEncoder
from lapo_ros.lapo.models.normalization import ActionScaler, JointNormalizer


class LatentPolicyHead(nn.Module):
    """LAPO's greedy action: the actor picks a latent, the VAE decoder turns it into an action."""

    def __init__(self, actor: Actor, actor_vae: ActorVAE) -> None:
        super().__init__()
        self.actor = actor
        self.actor_vae = actor_vae

    def forward(self, feature: torch.Tensor) -> torch.Tensor:
        return self.actor_vae.decode_latent(feature, self.actor(feature))


class DeployablePolicy(nn.Module):
    """normalise joint -> encode (image, joint) -> head -> action in robot units.

    ``head`` maps the observation feature to a normalised action, or ``chunk_size`` of them
    concatenated (``LatentPolicyHead`` for LAPO, the regression head for BC).
    ``image_size`` (H, W), ``joint_dim``, ``action_dim`` and ``chunk_size`` describe the
    inputs and output for the exporter's metadata.
    """

    def __init__(
        self,
        obs_encoder: ImageJointEncoder,
        head: nn.Module,
        joint_normalizer: JointNormalizer,
        action_scaler: ActionScaler,
        image_size: int,
        action_dim: int,
        chunk_size: int = 1,
    ) -> None:
        super().__init__()
        self.obs_encoder = obs_encoder
        self.head = head
        self.joint_normalizer = joint_normalizer
        self.action_scaler = action_scaler
        self.image_size = (int(image_size), int(image_size))
        self.joint_dim = int(obs_encoder.joint_dim)
        self.action_dim = int(action_dim)
        self.chunk_size = int(chunk_size)

    def forward(self, image: torch.Tensor, joint: torch.Tensor) -> torch.Tensor:
        """image uint8 [B, 9, H, W], joint float32 [B, J] -> action float32 [B, A], or
        [B, h, A] with chunk_size h > 1 (row i: i steps ahead)."""
        feature = self.obs_encoder(image, self.joint_normalizer(joint.float()))
        action = self.head(feature).float()
        if self.chunk_size > 1:
            action = action.reshape(action.shape[0], self.chunk_size, self.action_dim)
        return self.action_scaler(action)


def observation_arrays(
    left: np.ndarray,
    right: np.ndarray,
    global_: np.ndarray,
    joint: np.ndarray,
    image_size: int,
    joint_dim: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Three uint8 HWC RGB images (any size) and a joint vector -> ([9,S,S] uint8, [J] float32).

    Resizes with ``lapo_ros.common.images.resize_rgb``, the same path as the dataset.
    """
    images = []
    for name, image in (("left", left), ("right", right), ("global", global_)):
        image = np.asarray(image)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ImageConversionError(
                f"{name} image: expected uint8 HxWx3 RGB, got {image.dtype} {image.shape}"
            )
        images.append(resize_rgb(image, (image_size, image_size)))
    joint = np.asarray(joint, dtype=np.float32).reshape(-1)
    if joint.shape != (joint_dim,):
        raise ValueError(f"joint: expected {joint_dim} values, got {joint.size}")
    if not np.all(np.isfinite(joint)):
        raise ValueError(f"joint: not finite: {joint.tolist()}")
    return stack_cameras(*images), joint
