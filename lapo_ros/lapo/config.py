"""Every knob of the multimodal LAPO agent (and the BC baseline), with LAPO's defaults.

Defaults follow the original LAPO ``main_d4rl.py`` (Chen et al., NeurIPS 2022):
gamma 0.99, tau 0.005, lr 2e-4, expectile 0.9, kl_beta 1.0, max_latent_action 2.0,
doubleq_min 1.0, latent_dim = 2 * action_dim.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

AUTOCAST_DTYPES = ("bfloat16", "float16")
ADVANTAGE_WEIGHTINGS = ("expectile", "exponential")
ADVANTAGE_BASELINES = ("value", "joint")


@dataclass
class LAPOConfig:
    """Hyper-parameters of ``MultimodalLatent``; ``BehaviorCloning`` reads the shared ones."""

    # RL update
    gamma: float = 0.99  # discount
    tau: float = 0.005  # Polyak rate of every target network (parameters and buffers)
    expectile: float = 0.9  # VAE weight where the advantage is positive (1 - it elsewhere)
    kl_beta: float = 1.0  # weight of the VAE's KL term
    max_latent_action: float = 2.0  # actor outputs max_latent_action * tanh(.)
    doubleq_min: float = 1.0  # q_mix = doubleq_min * min(q1, q2) + (1 - it) * max(q1, q2)
    target_latent_noise: float = 0.2  # std of the noise on actor_target's latent in target_v
    target_latent_noise_clip: float = 0.5  # that noise is clipped to +- this
    # Auxiliary encoder objective, opt-in (0 = the seed's pure critic-led encoder). With few
    # updates the TD loss alone leaves image features that do not locate the targets, so
    # the detached VAE cannot act on them. When > 0 the critic gets an action head
    # (feature -> normalised action) and the critic loss adds this weight times its MSE to
    # the recorded action; it is stepped by the critic optimizer (critic + encoder), and
    # the VAE and the actor still train on detached features.
    encoder_action_weight: float = 0.0
    # Monte-Carlo returns, opt-in (0 / False = the seed's one-step TD). The critic's Q
    # target and the advantage's Q estimate use the recorded episode's discounted
    # return-to-go G (batch.return_to_go, at gamma): mixed in with this weight,
    # (1 - w) * TD + w * G, and/or raised to G as a lower bound. One-step TD needs many
    # updates to carry a terminal success/failure back along an episode; G carries it at once.
    return_mix: float = 0.0
    return_lower_bound: bool = False
    # True: the action head's MSE above is weighted per transition like the VAE loss, so
    # the encoder is shaped by the actions worth imitating, not by the average of all.
    weighted_encoder_action: bool = False
    # VAE weight from the advantage A: "expectile" (LAPO: expectile where A > 0, else
    # 1 - expectile) or "exponential" (exp(advantage_beta * A / std of A in the batch),
    # at most 20; AWR-like, so larger advantages weigh more, not only their sign).
    advantage_weighting: str = "expectile"
    advantage_beta: float = 2.0
    # False: "exponential" is exp(advantage_beta * A) with A in return units (AWR's fixed
    # temperature). Dividing by the batch's std makes small advantages as decisive as large
    # ones: on data of one quality, critic noise then decides the weights.
    advantage_std_normalized: bool = True
    # What the advantage subtracts from its Q estimate: "value" (LAPO: the critic's V(s)) or
    # "joint", opt-in: a regression of that Q estimate on the joint state alone, fitted by
    # the critic optimizer, cross-fitted over episodes. With one demonstration per scene,
    # V(s) learns from the images which demonstration failed (and soon where the arm is
    # heading), so a failed demonstration scores an advantage near 0 at every step and the
    # weights hardly filter it. The joint state does not show the scene: the baseline is
    # what demonstrations through that arm configuration achieve on average. Cross-fitting:
    # ``baseline_folds`` networks, network k fitted on the episodes whose index
    # (batch.episode) is k mod K; a transition is scored by the others, which never saw
    # its episode's own path (1: one network, not cross-fitted).
    advantage_baseline: str = "value"
    baseline_folds: int = 2
    # optimisers
    critic_lr: float = 2e-4  # critic + observation encoder
    actor_vae_lr: float = 2e-4
    actor_lr: float = 2e-4  # the latent actor (LAPO); encoder + regression head (BC)
    max_grad_norm: float | None = None  # clip the critic+encoder gradient norm when set
    # networks
    latent_dim: int | None = None  # None -> 2 * action_dim
    feature_dim: int = 256  # fused observation feature
    image_feature_dim: int = 256  # ResNet18 output
    joint_hidden_dim: int = 128  # joint MLP width
    hidden_dims: tuple[int, ...] = (256, 256, 256)  # Actor / ActorVAE / Critic MLPs
    image_size: int = 224  # square images fed to the encoder (buffer and agent agree)
    pretrained_path: str | None = None  # local torchvision resnet18 state_dict; never downloads
    conv1_scale: float = 1.0  # 1.0 copies the RGB conv1 kernel as the seed; 1/3 keeps magnitudes
    # compute
    channels_last: bool = False  # NHWC convolutions (faster on recent GPUs)
    fused_adam: bool = False  # one fused kernel per Adam step (CUDA and CPU)
    autocast_dtype: str | None = None  # "bfloat16" (or "float16") on CUDA; opt-in
    seed: int = 0

    def __post_init__(self) -> None:
        self.hidden_dims = tuple(int(h) for h in self.hidden_dims)
        checks = {
            "gamma": 0.0 <= self.gamma < 1.0,
            "tau": 0.0 < self.tau <= 1.0,
            "expectile": 0.0 <= self.expectile <= 1.0,
            "kl_beta": self.kl_beta >= 0.0,
            "max_latent_action": self.max_latent_action > 0.0,
            "doubleq_min": 0.0 <= self.doubleq_min <= 1.0,
            "target_latent_noise": self.target_latent_noise >= 0.0,
            "target_latent_noise_clip": self.target_latent_noise_clip >= 0.0,
            "encoder_action_weight": self.encoder_action_weight >= 0.0,
            "return_mix": 0.0 <= self.return_mix <= 1.0,
            "advantage_weighting": self.advantage_weighting in ADVANTAGE_WEIGHTINGS,
            "advantage_beta": self.advantage_beta > 0.0,
            "advantage_baseline": self.advantage_baseline in ADVANTAGE_BASELINES,
            "baseline_folds": self.baseline_folds >= 1,
            "weighted_encoder_action": (not self.weighted_encoder_action
                                        or self.encoder_action_weight > 0),
            "critic_lr": self.critic_lr > 0.0,
            "actor_vae_lr": self.actor_vae_lr > 0.0,
            "actor_lr": self.actor_lr > 0.0,
            "max_grad_norm": self.max_grad_norm is None or self.max_grad_norm > 0.0,
            "latent_dim": self.latent_dim is None or self.latent_dim > 0,
            "feature_dim": self.feature_dim > 0,
            "image_feature_dim": self.image_feature_dim > 0,
            "joint_hidden_dim": self.joint_hidden_dim > 0,
            "hidden_dims": len(self.hidden_dims) > 0 and min(self.hidden_dims) > 0,
            "image_size": self.image_size >= 16,
            "conv1_scale": self.conv1_scale > 0.0,
            "autocast_dtype": self.autocast_dtype in (None, *AUTOCAST_DTYPES),
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in bad)
            raise ValueError(f"LAPOConfig: invalid {shown}")

    def resolved_latent_dim(self, action_dim: int) -> int:
        return self.latent_dim if self.latent_dim is not None else 2 * action_dim

    @classmethod
    def from_overrides(cls, overrides: dict[str, Any], *, owner: str = "LAPOConfig") -> LAPOConfig:
        """Build from keyword overrides, naming any unknown key."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise TypeError(
                f"{owner}: unknown option(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(known))}"
            )
        return cls(**overrides)

    def to_dict(self) -> dict[str, Any]:
        """Plain values only (lists for tuples): safe for ``torch.load(weights_only=True)``."""
        data = asdict(self)
        data["hidden_dims"] = list(self.hidden_dims)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LAPOConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: (tuple(v) if k == "hidden_dims" else v)
                      for k, v in data.items() if k in known})

