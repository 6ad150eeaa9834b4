"""Every knob of the agents: the encoder and compute options they share (``AgentConfig``),
LAPO's update (``LAPOConfig``) and the behaviour-cloning baseline (``BCConfig``).

LAPO's networks and update follow the original (Chen et al., NeurIPS 2022; ``main_d4rl.py``
and ``algos_vae.py``): gamma 0.99, kl_beta 1.0, max_latent_action 2.0, doubleq_min 1.0,
target-policy noise 0.1 clipped at 0.2, latent_dim = 2 * action_dim. Where the default
differs, its comment says why, with the measurement in BENCHMARKS.md (learning): tau 0.05,
the critic's action head, and the way the VAE's weights are made from demonstrations
(cross-fitted critics, the return estimate, one sign per demonstration against the mean
start value, expectile 1.0, the VAE training the encoder). The literal LAPO test
(``test/test_lapo_update.py``) sets the original's values.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, TypeVar

from lapo_ros.common.validation import check_fields, typed_value, unknown_keys

AUTOCAST_DTYPES = ("auto", "bfloat16", "float16", "float32")
ADVANTAGE_ESTIMATES = ("one_step", "return")
ADVANTAGE_SCOPES = ("step", "episode")
EPISODE_BASELINES = ("state", "mean")
RETURN_BASELINES = ("behaviour", "policy")
C = TypeVar("C", bound="AgentConfig")


@dataclass
class AgentConfig:
    """The observation encoder, network sizes and compute options every agent has."""

    feature_dim: int = 256  # fused observation feature
    image_feature_dim: int = 256  # ResNet18 output
    joint_hidden_dim: int = 128  # joint MLP width
    hidden_dims: tuple[int, ...] = (256, 256, 256)  # MLPs after the encoder
    image_size: int = 224  # square images fed to the encoder (buffer and agent agree)
    pretrained_path: str | None = None  # local torchvision resnet18 state_dict; never downloads
    conv1_scale: float = 1.0  # 1.0 copies the RGB conv1 kernel as the seed; 1/3 keeps magnitudes
    max_grad_norm: float | None = None  # clip the encoder's (and its optimiser's) gradient norm
    # Training images shift by up to this fraction of their side, per sample (DrQ's random
    # shift, data/augmentation.py; 0 = off); selecting an action never shifts
    random_shift: float = 0.0
    # Compute options (BENCHMARKS.md, training_step and seed_comparison): NHWC convolutions,
    # one fused kernel per Adam step, and mixed precision ("auto": bfloat16 where the device
    # computes it natively, CUDA from Ampere on or a CPU with AVX512-BF16 or AMX, float32
    # elsewhere; "bfloat16", "float16"; None or "float32": off). Together 2-3x faster on this
    # CPU, but off by default: each changes the update's rounding, and with it one held-out
    # scene of a known-answer check flips mode (BENCHMARKS.md, learning). Weights, optimiser
    # state and exported policies stay float32
    channels_last: bool = False
    fused_adam: bool = False
    autocast_dtype: str | None = None
    # torch.compile every observation encoder of the update (``nn.Module.compile``: weights,
    # checkpoints and exported policies unchanged). The first steps compile; then 1.21x on
    # this CPU alone, 0.94x on top of the other options (BENCHMARKS.md, training_step); CUDA
    # unmeasured
    compile_encoders: bool = False
    # Actions per prediction (h): 1 = one action per observation; h > 1 models the
    # sequence a_t..a_{t+h-1} (ACT's action chunks), scored with the h-step reward sum
    # and a bootstrap from s_{t+h} (an unbiased n-step backup, as Q-chunking)
    chunk_size: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        self.hidden_dims = tuple(int(h) for h in self.hidden_dims)
        check_fields(type(self).__name__, self, self.checks())

    def checks(self) -> dict[str, bool]:
        """Field name -> whether its value is valid (subclasses add theirs)."""
        return {
            "feature_dim": self.feature_dim > 0,
            "image_feature_dim": self.image_feature_dim > 0,
            "joint_hidden_dim": self.joint_hidden_dim > 0,
            "hidden_dims": len(self.hidden_dims) > 0 and min(self.hidden_dims) > 0,
            "image_size": self.image_size >= 16,
            "chunk_size": self.chunk_size >= 1,
            "conv1_scale": self.conv1_scale > 0.0,
            "max_grad_norm": self.max_grad_norm is None or self.max_grad_norm > 0.0,
            "random_shift": 0.0 <= self.random_shift < 0.5,
            "autocast_dtype": (self.autocast_dtype in (None, *AUTOCAST_DTYPES),
                               f"must be one of {AUTOCAST_DTYPES}"),
        }

    @classmethod
    def from_overrides(cls: type[C], overrides: dict[str, Any], *, owner: str = "") -> C:
        """Build from keyword overrides, naming any unknown key or wrongly typed value."""
        owner = owner or cls.__name__
        unknown_keys(cls, overrides, owner)
        return cls(**{key: typed_value(cls, key, value, f"{owner}: {key}")
                      for key, value in overrides.items()})

    def to_dict(self) -> dict[str, Any]:
        """Plain values only (lists for tuples): safe for ``torch.load(weights_only=True)``."""
        data = asdict(self)
        data["hidden_dims"] = list(self.hidden_dims)
        return data

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any]) -> C:
        """Inverse of ``to_dict`` (as saved in a checkpoint)."""
        return cls.from_overrides({k: tuple(v) if k == "hidden_dims" else v
                                   for k, v in data.items()})


@dataclass
class LAPOConfig(AgentConfig):
    """Hyper-parameters of ``MultimodalLatent``.

    Where a default differs from the original LAPO, the comment says why; the measurements
    are in BENCHMARKS.md (learning).
    """

    # RL update (LAPO, algos_vae.py)
    gamma: float = 0.99  # discount
    # Polyak rate of every target network (parameters and buffers). LAPO: 0.005, made for
    # 1M updates; a terminal outcome reaches a state k steps before it through k backups,
    # each waiting for the target critic. In the sim benchmark (1000 updates) 0.005 gives
    # 30% success against 72% (BENCHMARKS.md, learning ablations).
    tau: float = 0.05
    # VAE weight where the advantage is positive (1 - it elsewhere). LAPO: 0.9; with one
    # sign per demonstration 0.9 leaves a 0.1 weight on every wrong demonstration, which
    # keeps its mode in the VAE (38% against 66% in the sim benchmark)
    expectile: float = 1.0
    # What the VAE weight's sign is taken of. "one_step" (LAPO): r + gamma * Q(s', pi(s'))
    # - V(s). "return": G - V(s), G the recorded discounted return-to-go of the transition
    # (one-step where the episode timed out): the demonstration's own outcome, not the
    # critic's guess of it
    advantage_estimate: str = "return"
    # What the "return" estimate compares G with. "policy" (LAPO's V): V(s), the learned
    # policy's value, trained towards Q(s, pi(s)); once pi takes the best recorded action, a
    # successful demonstration's G - V(s) is about 0 and its sign is noise. "behaviour":
    # V_b(s), a critic head regressed on the recorded returns (the average demonstrator's
    # outcome from s, fitted like the critic on the episodes outside each fold), so a
    # demonstration scores above 0 when it did better than its peers did from that state.
    # It keeps the successful share of the weights in the known-answer problems but lowers
    # the sim benchmark's success (BENCHMARKS.md, learning ablations), so "policy" stays
    return_baseline: str = "policy"
    # Whose advantage the VAE weight's sign is. "step" (LAPO): each transition's own.
    # "episode": the advantage of its episode's first transition (last computed when a batch
    # drew it; the transition's own until then), so a demonstration is imitated or not as a
    # whole: once a demonstrator has moved, V(s) follows its choice and the per-step sign is
    # noise along a wrong demonstration (BENCHMARKS.md, learning). A demonstration that
    # fails late is then dropped whole, its good first part too
    advantage_scope: str = "episode"
    # What the episode scope compares a demonstration's first-step return with. "mean": the
    # mean of V(s_0) over the recorded starts (each from its held-out critic pair), the
    # policy's expected value from a start, at most the mean recorded start return; "state":
    # V(s_0) of its own start. With one demonstration per scene a critic's V on an unseen
    # start is the return of whoever demonstrated similar scenes: in the sim its spread over
    # the starts grew to about +-1 during training, as wide as the gap between successful
    # (+1.1) and failed (-0.7) returns, and the per-start sign let up to a third of one
    # fold's failed demonstrations in; the mean keeps the spread out and weighs like the
    # recorded outcomes. The cap: a critic that overrates its policy above every recorded
    # start (the chunk problem: V(s_0) > the best return) would weigh no demonstration; the
    # better-than-average ones stay imitated (BENCHMARKS.md, learning). Assumes starts of
    # like difficulty
    episode_baseline: str = "mean"
    # Cross-fitted critics (K, 1 = LAPO): K encoder + critic pairs, pair k fitted on the
    # episodes outside fold k (fold = hash of the episode index); a transition's advantage
    # and its actor gradient come from the pair that never trained on its episode, so the
    # critic cannot weigh a demonstration by remembering how it ended (with a few dozen
    # demonstrations V(s_0) learns each one's return and the return advantage is noise).
    # Pair 0 is the deployed encoder. K times the critic's compute
    critic_folds: int = 2
    kl_beta: float = 1.0  # weight of the VAE's KL term
    max_latent_action: float = 2.0  # actor outputs max_latent_action * tanh(.)
    doubleq_min: float = 1.0  # q_mix = doubleq_min * min(q1, q2) + (1 - it) * max(q1, q2)
    target_latent_noise: float = 0.1  # std of the noise on actor_target's latent in target_v
    target_latent_noise_clip: float = 0.2  # that noise is clipped to +- this
    # Weight of the critic's action head in the critic loss (0: the seed's pure TD-trained
    # encoder). The head predicts the recorded (normalised) action from the observation
    # feature; the critic optimizer steps it with the critic and the encoder, so the encoder
    # also learns what the demonstrations' actions depend on. The VAE and the actor still
    # train on detached features. Without it: 8% success against 72% in the sim benchmark
    # (BENCHMARKS.md, learning ablations).
    encoder_action_weight: float = 1.0
    # The VAE's weighted loss also trains the encoder (the actor-VAE optimizer holds it too;
    # one more encoder pass per update; LAPO has no encoder). With success-only weights it
    # lifts the sim from 42% to 94% (BENCHMARKS.md, "what limits the default")
    vae_encoder_gradient: bool = True
    # optimisers
    critic_lr: float = 2e-4  # critic + observation encoder
    actor_vae_lr: float = 2e-4
    actor_lr: float = 2e-4  # the latent actor
    latent_dim: int | None = None  # None -> 2 * the modelled actions (chunk_size * action_dim)

    def checks(self) -> dict[str, bool]:
        return {
            **super().checks(),
            "gamma": 0.0 <= self.gamma < 1.0,
            "tau": 0.0 < self.tau <= 1.0,
            "expectile": 0.0 <= self.expectile <= 1.0,
            "advantage_estimate": (self.advantage_estimate in ADVANTAGE_ESTIMATES,
                                   f"must be one of {ADVANTAGE_ESTIMATES}"),
            "advantage_scope": (self.advantage_scope in ADVANTAGE_SCOPES,
                                f"must be one of {ADVANTAGE_SCOPES}"),
            "episode_baseline": (self.episode_baseline in EPISODE_BASELINES,
                                 f"must be one of {EPISODE_BASELINES}"),
            "return_baseline": (self.return_baseline in RETURN_BASELINES,
                                f"must be one of {RETURN_BASELINES}"),
            "critic_folds": self.critic_folds >= 1,
            "kl_beta": self.kl_beta >= 0.0,
            "max_latent_action": self.max_latent_action > 0.0,
            "doubleq_min": 0.0 <= self.doubleq_min <= 1.0,
            "target_latent_noise": self.target_latent_noise >= 0.0,
            "target_latent_noise_clip": self.target_latent_noise_clip >= 0.0,
            "encoder_action_weight": self.encoder_action_weight >= 0.0,
            "critic_lr": self.critic_lr > 0.0,
            "actor_vae_lr": self.actor_vae_lr > 0.0,
            "actor_lr": self.actor_lr > 0.0,
            "latent_dim": self.latent_dim is None or self.latent_dim > 0,
        }

    @property
    def behaviour_baseline(self) -> bool:
        """Whether the critic has the behaviour-value head (the "return" estimate against
        ``return_baseline`` "behaviour")."""
        return self.advantage_estimate == "return" and self.return_baseline == "behaviour"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LAPOConfig:
        """As ``AgentConfig.from_dict``; a checkpoint written before ``return_baseline``
        existed compared returns with the policy's V."""
        return super().from_dict({"return_baseline": "policy", **data})

    def resolved_latent_dim(self, action_dim: int) -> int:
        return self.latent_dim if self.latent_dim is not None else 2 * action_dim


@dataclass
class BCConfig(AgentConfig):
    """Hyper-parameters of ``BehaviorCloning``: the shared encoder options and one rate."""

    lr: float = 2e-4  # Adam on the encoder and the regression head

    def checks(self) -> dict[str, bool]:
        return {**super().checks(), "lr": self.lr > 0.0}
