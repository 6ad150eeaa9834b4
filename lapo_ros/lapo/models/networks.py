"""Networks of multimodal LAPO: a 9-channel ResNet18 + joint MLP, and the LAPO heads.

Images enter as uint8 [B, 9, H, W] (left, right, global RGB) and are converted and
ImageNet-normalised inside ``ResNet18Encoder``, so training, evaluation and the exported
policy all see the same arithmetic. Heads follow the original LAPO code (``algos_vae.py``):
MLPs of three 256-unit hidden layers by default.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
from torch import nn
from torchvision.models import resnet18

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RESNET18_FEATURES = 512


class PretrainedWeightsError(ValueError):
    """A local ResNet18 weights file that is missing or does not hold a resnet18 state_dict."""


def mlp(in_dim: int, hidden_dims: Sequence[int], out_dim: int) -> nn.Sequential:
    """Linear-ReLU stack ending in a plain Linear layer."""
    layers: list[nn.Module] = []
    for width in hidden_dims:
        layers += [nn.Linear(in_dim, width), nn.ReLU()]
        in_dim = width
    layers.append(nn.Linear(in_dim, out_dim))
    return nn.Sequential(*layers)


def load_resnet18_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a torchvision resnet18 ``state_dict`` from a local file (never downloads)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise PretrainedWeightsError(f"pretrained_path {path!r}: no such file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for corrupt or foreign files
        raise PretrainedWeightsError(
            f"pretrained_path {path!r}: not a torch state_dict file ({error})"
        ) from error
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or "conv1.weight" not in state:
        raise PretrainedWeightsError(
            f"pretrained_path {path!r}: not a torchvision resnet18 state_dict (no 'conv1.weight')"
        )
    conv1 = state["conv1.weight"]
    if tuple(conv1.shape) != (64, 3, 7, 7):
        raise PretrainedWeightsError(
            f"pretrained_path {path!r}: conv1.weight has shape {tuple(conv1.shape)}, "
            "expected an RGB resnet18's (64, 3, 7, 7)"
        )
    return state


class ResNet18Encoder(nn.Module):
    """ResNet18 over ``in_channels`` stacked RGB channels -> ``output_dim`` features.

    uint8 [B, C, H, W] -> float in [0, 1] -> ImageNet mean/std per 3-channel slice, inside
    the model. With ``pretrained_path`` (a local torchvision resnet18 ``state_dict``) the
    RGB conv1 kernel is copied into every 3-channel slice, times ``conv1_scale`` (1.0 as in
    the seed; 1/3 keeps conv1's output magnitude as for one RGB image). The final fc layer
    is new (``512 -> output_dim``).
    """

    def __init__(
        self,
        output_dim: int = 256,
        in_channels: int = 9,
        pretrained_path: str | os.PathLike | None = None,
        conv1_scale: float = 1.0,
    ) -> None:
        super().__init__()
        if in_channels % 3 != 0:
            raise ValueError(f"in_channels must be a multiple of 3 (RGB slices), got {in_channels}")
        backbone = resnet18(weights=None)
        if pretrained_path is not None:
            state = load_resnet18_state_dict(pretrained_path)
            body = {k: v for k, v in state.items() if not k.startswith(("fc.", "conv1."))}
            missing, unexpected = backbone.load_state_dict(body, strict=False)
            missing = [k for k in missing if not k.startswith(("fc.", "conv1."))]
            if missing or unexpected:
                raise PretrainedWeightsError(
                    f"pretrained_path {os.fspath(pretrained_path)!r}: keys do not match "
                    f"resnet18 (missing {missing[:3]}, unexpected {unexpected[:3]})"
                )
            rgb_kernel = state["conv1.weight"].float()
        else:
            rgb_kernel = None
        backbone.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        if rgb_kernel is not None:
            with torch.no_grad():
                backbone.conv1.weight.copy_(rgb_kernel.repeat(1, in_channels // 3, 1, 1))
                backbone.conv1.weight.mul_(conv1_scale)
        backbone.fc = nn.Linear(RESNET18_FEATURES, output_dim)
        self.backbone = backbone
        repeats = in_channels // 3
        mean = torch.tensor(IMAGENET_MEAN * repeats).view(1, in_channels, 1, 1)
        std = torch.tensor(IMAGENET_STD * repeats).view(1, in_channels, 1, 1)
        # 1/255 folded into the scale: x_norm = x_uint8 * scale + shift
        self.register_buffer("scale", 1.0 / (255.0 * std), persistent=False)
        self.register_buffer("shift", -mean / std, persistent=False)
        self.output_dim = output_dim
        self.in_channels = in_channels

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = image.to(self.scale.dtype) * self.scale + self.shift
        return self.backbone(x)


class ImageJointEncoder(nn.Module):
    """One pass of the 9-channel encoder, fused with a joint MLP into one feature vector."""

    def __init__(
        self,
        joint_dim: int = 16,
        image_feature_dim: int = 256,
        fusion_dim: int = 256,
        joint_hidden_dim: int = 128,
        pretrained_path: str | os.PathLike | None = None,
        conv1_scale: float = 1.0,
    ) -> None:
        super().__init__()
        self.image_encoder = ResNet18Encoder(
            output_dim=image_feature_dim,
            in_channels=9,
            pretrained_path=pretrained_path,
            conv1_scale=conv1_scale,
        )
        self.joint_encoder = nn.Sequential(
            nn.Linear(joint_dim, joint_hidden_dim),
            nn.ReLU(),
            nn.Linear(joint_hidden_dim, joint_hidden_dim),
            nn.ReLU(),
        )
        # LayerNorm bounds the feature scale while the critic reshapes the encoder, so the
        # heads that read detached features (VAE, actor) see a stable input range.
        self.fusion = nn.Sequential(
            nn.Linear(image_feature_dim + joint_hidden_dim, fusion_dim),
            nn.ReLU(),
            nn.Linear(fusion_dim, fusion_dim),
            nn.LayerNorm(fusion_dim),
        )
        self.joint_dim = joint_dim
        self.output_dim = fusion_dim

    def forward(self, image: torch.Tensor, joint: torch.Tensor) -> torch.Tensor:
        """image: uint8 [B, 9, H, W]; joint: normalised float [B, J] -> [B, fusion_dim]."""
        image_feature = self.image_encoder(image)
        joint_feature = self.joint_encoder(joint.to(image_feature.dtype))
        return self.fusion(torch.cat([image_feature, joint_feature], dim=1))

    def forward_cameras(
        self,
        left: torch.Tensor,
        right: torch.Tensor,
        global_: torch.Tensor,
        joint: torch.Tensor,
    ) -> torch.Tensor:
        """The seed's call: three uint8 [B, 3, H, W] images stacked as [left, right, global]."""
        return self(torch.cat([left, right, global_], dim=1), joint)


class Actor(nn.Module):
    """Latent policy: feature -> ``max_latent_action * tanh(.)`` in the VAE's latent space."""

    def __init__(
        self,
        feature_dim: int,
        latent_dim: int,
        max_latent_action: float = 2.0,
        hidden_dims: Sequence[int] = (256, 256, 256),
    ) -> None:
        super().__init__()
        self.net = mlp(feature_dim, hidden_dims, latent_dim)
        self.max_latent_action = float(max_latent_action)

    def forward(self, feature: torch.Tensor) -> torch.Tensor:
        return self.max_latent_action * torch.tanh(self.net(feature))


class ActorVAE(nn.Module):
    """Conditional VAE over normalised actions given the observation feature (LAPO's).

    The decoder is linear at the output, as in LAPO: decoded actions are z-scores of the
    recorded commands (the deployed policy clips them to the recorded range).
    """

    def __init__(
        self,
        feature_dim: int,
        action_dim: int,
        latent_dim: int,
        max_latent_action: float = 2.0,
        hidden_dims: Sequence[int] = (256, 256, 256),
    ) -> None:
        super().__init__()
        self.encoder = mlp(feature_dim + action_dim, hidden_dims[:-1], hidden_dims[-1])
        self.mean = nn.Linear(hidden_dims[-1], latent_dim)
        self.log_var = nn.Linear(hidden_dims[-1], latent_dim)
        self.decoder = mlp(feature_dim + latent_dim, hidden_dims, action_dim)
        self.latent_dim = latent_dim
        self.max_latent_action = float(max_latent_action)

    def forward(
        self,
        feature: torch.Tensor,
        action: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> (reconstruction, z, mean, log_var); z by the reparameterisation trick."""
        hidden = torch.relu(self.encoder(torch.cat([feature, action], dim=1)))
        mean = self.mean(hidden)
        log_var = self.log_var(hidden)
        noise = torch.randn(
            mean.shape, generator=generator, device=mean.device, dtype=mean.dtype
        )
        z = mean + torch.exp(log_var / 2) * noise
        return self.decode_latent(feature, z), z, mean, log_var

    def decode(
        self,
        feature: torch.Tensor,
        z: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Decode ``z``; without one, a prior sample clipped to +-max_latent_action (LAPO)."""
        if z is None:
            z = torch.randn(
                (feature.shape[0], self.latent_dim),
                generator=generator,
                device=feature.device,
                dtype=feature.dtype,
            ).clamp(-self.max_latent_action, self.max_latent_action)
        return self.decode_latent(feature, z)

    def decode_latent(self, feature: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Deterministic decoder (what the deployed policy runs)."""
        return self.decoder(torch.cat([feature, z], dim=1))


class Critic(nn.Module):
    """Two Q heads over (feature, normalised action) and a V head over the feature.

    ``action_head=True`` adds ``action_net`` (feature -> normalised action), the critic's
    action head (``LAPOConfig.encoder_action_weight``): trained with the critic, it lets the
    critic optimizer teach the encoder what the recorded actions depend on.
    ``behaviour_head=True`` adds ``behaviour_v_net`` (feature -> the demonstrators' expected
    return, ``LAPOConfig.return_baseline`` "behaviour").
    """

    def __init__(
        self, feature_dim: int, action_dim: int, hidden_dims: Sequence[int] = (256, 256, 256),
        action_head: bool = False, behaviour_head: bool = False,
    ) -> None:
        super().__init__()
        self.q1_net = mlp(feature_dim + action_dim, hidden_dims, 1)
        self.q2_net = mlp(feature_dim + action_dim, hidden_dims, 1)
        self.v_net = mlp(feature_dim, hidden_dims, 1)
        self.action_net = mlp(feature_dim, hidden_dims, action_dim) if action_head else None
        self.behaviour_v_net = None
        if behaviour_head:  # drawn without moving the global RNG: every other network of
            # the agent starts as it would without this head (ablations share their init)
            with torch.random.fork_rng(devices=[]):
                self.behaviour_v_net = mlp(feature_dim, hidden_dims, 1)

    def forward(
        self, feature: torch.Tensor, action: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        state_action = torch.cat([feature, action], dim=1)
        return self.q1_net(state_action), self.q2_net(state_action)

    def q1(self, feature: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.q1_net(torch.cat([feature, action], dim=1))

    def v(self, feature: torch.Tensor) -> torch.Tensor:
        return self.v_net(feature)

    def behaviour_v(self, feature: torch.Tensor) -> torch.Tensor:
        """The demonstrators' expected return from the state (``behaviour_head=True`` only)."""
        if self.behaviour_v_net is None:
            raise RuntimeError("Critic.behaviour_v: built without behaviour_head")
        return self.behaviour_v_net(feature)

    def predict_action(self, feature: torch.Tensor) -> torch.Tensor:
        """The action head's normalised action (``action_head=True`` only)."""
        if self.action_net is None:
            raise RuntimeError("Critic.predict_action: built without action_head")
        return self.action_net(feature)
