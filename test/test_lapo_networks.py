"""Networks, normalisation and the deployable policy of the learning core (issue 3)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torchvision.models import resnet18

from lapo_ros.lapo import ActorVAE, ImageJointEncoder, ResNet18Encoder
from lapo_ros.lapo.data.batch import DatasetStatistics
from lapo_ros.lapo.models.networks import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Actor,
    Critic,
    PretrainedWeightsError,
)
from lapo_ros.lapo.models.normalization import ActionScaler, JointNormalizer
from lapo_ros.lapo.models.policy import DeployablePolicy, LatentPolicyHead


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def statistics(joint_dim: int = 3, action_dim: int = 2) -> DatasetStatistics:
    return DatasetStatistics(
        joint_mean=np.linspace(-1, 1, joint_dim).astype(np.float32),
        joint_std=np.array([2.0] + [0.0] * (joint_dim - 1), dtype=np.float32),
        action_mean=np.array([2.0] + [5.0] * (action_dim - 1), dtype=np.float32),
        action_std=np.array([4.0] + [0.0] * (action_dim - 1), dtype=np.float32),
        action_min=np.array([-2.0] + [5.0] * (action_dim - 1), dtype=np.float32),
        action_max=np.array([6.0] + [5.0] * (action_dim - 1), dtype=np.float32),
        reward_min=0.0,
        reward_max=1.0,
        num_transitions=10,
    )


@pytest.fixture(scope="module")
def resnet_file(tmp_path_factory) -> str:
    """A local torchvision resnet18 state_dict with recognisable random weights."""
    torch.manual_seed(123)
    path = tmp_path_factory.mktemp("weights") / "resnet18.pth"
    torch.save(resnet18(weights=None).state_dict(), path)
    return str(path)


def test_nine_channel_encoder_has_a_third_of_three_resnets_parameters():
    single = count(ResNet18Encoder(output_dim=256, in_channels=9))
    three = 3 * count(ResNet18Encoder(output_dim=256, in_channels=3))
    assert 11.2e6 < single < 11.45e6
    assert 33.7e6 < three < 34.1e6
    assert single / three == pytest.approx(1 / 3, abs=0.01)


def test_pretrained_conv1_is_copied_into_each_slice_and_scaled(resnet_file):
    state = torch.load(resnet_file, weights_only=True)
    copied = ResNet18Encoder(in_channels=9, pretrained_path=resnet_file)
    third = ResNet18Encoder(in_channels=9, pretrained_path=resnet_file, conv1_scale=1 / 3)
    kernel = state["conv1.weight"]
    for start in (0, 3, 6):
        torch.testing.assert_close(copied.backbone.conv1.weight[:, start : start + 3], kernel)
        torch.testing.assert_close(third.backbone.conv1.weight[:, start : start + 3], kernel / 3)
    layer = copied.backbone.layer3[1].conv2.weight
    torch.testing.assert_close(layer, state["layer3.1.conv2.weight"])
    torch.testing.assert_close(copied.backbone.bn1.running_var, state["bn1.running_var"])
    assert copied.backbone.fc.out_features == 256


def test_no_download_ever(monkeypatch, resnet_file):
    def refuse(*args, **kwargs):
        raise AssertionError("tried to download weights")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    ResNet18Encoder()
    ResNet18Encoder(pretrained_path=resnet_file)


def test_bad_pretrained_files_name_the_path(tmp_path):
    missing = tmp_path / "nope.pth"
    with pytest.raises(PretrainedWeightsError, match="nope.pth.*no such file"):
        ResNet18Encoder(pretrained_path=missing)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a torch file")
    with pytest.raises(PretrainedWeightsError, match="garbage.pth"):
        ResNet18Encoder(pretrained_path=garbage)
    foreign = tmp_path / "foreign.pth"
    torch.save({"weight": torch.zeros(3)}, foreign)
    with pytest.raises(PretrainedWeightsError, match="foreign.pth.*conv1.weight"):
        ResNet18Encoder(pretrained_path=foreign)
    gray = tmp_path / "gray.pth"
    state = resnet18(weights=None).state_dict()
    state["conv1.weight"] = state["conv1.weight"][:, :1]
    torch.save(state, gray)
    with pytest.raises(PretrainedWeightsError, match="gray.pth.*shape"):
        ResNet18Encoder(pretrained_path=gray)


def test_images_are_imagenet_normalised_inside_the_model():
    encoder = ResNet18Encoder(output_dim=8).eval()
    rng = np.random.default_rng(0)
    image = torch.from_numpy(rng.integers(0, 256, size=(2, 9, 32, 32), dtype=np.uint8))
    mean = torch.tensor(IMAGENET_MEAN * 3).view(1, 9, 1, 1)
    std = torch.tensor(IMAGENET_STD * 3).view(1, 9, 1, 1)
    manual = encoder.backbone((image.float() / 255 - mean) / std)
    torch.testing.assert_close(encoder(image), manual, rtol=1e-4, atol=1e-4)


def test_image_joint_encoder_stacks_cameras_in_order():
    torch.manual_seed(0)
    encoder = ImageJointEncoder(joint_dim=5, image_feature_dim=32, fusion_dim=24).eval()
    left, right, global_ = (
        torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8) for _ in range(3)
    )
    joint = torch.randn(3, 5)
    feature = encoder.forward_cameras(left, right, global_, joint)
    assert feature.shape == (3, 24)
    torch.testing.assert_close(feature, encoder(torch.cat([left, right, global_], 1), joint))
    swapped = encoder.forward_cameras(right, left, global_, joint)
    assert not torch.allclose(feature, swapped)


def test_heads_shapes_and_bounds():
    torch.manual_seed(0)
    feature = torch.randn(64, 16) * 50
    actor = Actor(16, 6, max_latent_action=2.0, hidden_dims=(32, 32))
    latent = actor(feature)
    assert latent.shape == (64, 6) and latent.abs().max() <= 2.0
    vae = ActorVAE(16, 3, 6, max_latent_action=2.0, hidden_dims=(32, 32))
    action = torch.rand(64, 3) * 3 - 1.5
    reconstruction, z, mean, log_var = vae(feature, action)
    assert reconstruction.shape == (64, 3) and z.shape == mean.shape == log_var.shape == (64, 6)
    generator = torch.Generator().manual_seed(7)
    sampled = vae.decode(feature, generator=generator)
    generator.manual_seed(7)
    prior = torch.randn(64, 6, generator=generator).clamp(-2.0, 2.0)
    torch.testing.assert_close(sampled, vae.decode_latent(feature, prior))
    torch.testing.assert_close(vae.decode(feature, latent), vae.decode_latent(feature, latent))
    critic = Critic(16, 3, hidden_dims=(32, 32))
    q1, q2 = critic(feature, action)
    assert q1.shape == q2.shape == critic.v(feature).shape == (64, 1)
    torch.testing.assert_close(q1, critic.q1(feature, action))
    assert not torch.allclose(q1, q2)


def test_joint_normalizer_uses_mean_std_with_a_floor():
    normalizer = JointNormalizer(statistics(), joint_dim=3)
    joint = torch.tensor([[3.0, 0.0, 1.0]])
    expected = torch.tensor([[(3.0 + 1) / 2, 0.0, 0.0]])
    torch.testing.assert_close(normalizer(joint), expected)
    assert set(normalizer.state_dict()) == {"mean", "std"}
    assert torch.isfinite(normalizer(torch.tensor([[0.0, 0.1, 1.1]]))).all()


def test_action_scaler_z_scores_and_clips_to_the_recorded_range():
    scaler = ActionScaler(statistics(), action_dim=2)
    action = torch.tensor([[-2.0, 5.0], [6.0, 5.0], [2.0, 5.0]])
    normalized = scaler.normalize(action)
    # mean 2, std 4 on the first joint; the constant second joint (std 0) maps to 0
    torch.testing.assert_close(normalized, torch.tensor([[-1.0, 0.0], [1.0, 0.0], [0.0, 0.0]]))
    torch.testing.assert_close(scaler(normalized), action)
    # beyond the recorded range [-2, 6] x [5, 5] the robot-unit action is clipped
    torch.testing.assert_close(scaler(torch.tensor([[3.0, 7.0], [-9.0, -1.0]])),
                               torch.tensor([[6.0, 5.0], [-2.0, 5.0]]))
    assert set(scaler.state_dict()) == {"mean", "std", "low", "high"}


def test_bad_statistics_name_the_field():
    broken = statistics()
    broken.joint_mean = np.zeros(2, np.float32)
    with pytest.raises(ValueError, match="joint_mean has 2 values, expected 3"):
        JointNormalizer(broken, joint_dim=3)
    broken = statistics()
    broken.action_max = np.array([np.nan, 5.0], np.float32)
    with pytest.raises(ValueError, match="action_max is not finite"):
        ActionScaler(broken, 2)


def small_policy(joint_dim: int = 3, action_dim: int = 2) -> DeployablePolicy:
    torch.manual_seed(0)
    encoder = ImageJointEncoder(joint_dim, image_feature_dim=32, fusion_dim=32, joint_hidden_dim=16)
    head = LatentPolicyHead(Actor(32, 4, 2.0, (32,)), ActorVAE(32, action_dim, 4, 2.0, (32,)))
    policy = DeployablePolicy(
        encoder,
        head,
        JointNormalizer(statistics(), joint_dim),
        ActionScaler(statistics(), action_dim),
        32,
        action_dim,
    )
    return policy.eval()


def inputs(batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(batch)
    image = torch.randint(0, 256, (batch, 9, 32, 32), dtype=torch.uint8, generator=generator)
    return image, torch.randn(batch, 3, generator=generator) * 2


def test_deployable_policy_outputs_robot_units_in_the_data_range():
    policy = small_policy()
    assert policy.image_size == (32, 32) and policy.joint_dim == 3 and policy.action_dim == 2
    action = policy(*inputs(4))
    assert action.dtype == torch.float32 and action.shape == (4, 2)
    assert ((action[:, 0] >= -2.0) & (action[:, 0] <= 6.0)).all()
    torch.testing.assert_close(action[:, 1], torch.full((4,), 5.0))


@pytest.mark.slow
def test_deployable_policy_traces_and_scripts():
    policy = small_policy()
    image, joint = inputs(2)
    expected = policy(image, joint)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated, still used
        traced = torch.jit.trace(policy, (image, joint))
        scripted = torch.jit.script(policy)
    other = inputs(5)
    torch.testing.assert_close(traced(*other), policy(*other))
    torch.testing.assert_close(scripted(*other), policy(*other))
    torch.testing.assert_close(scripted(image, joint), expected)


@pytest.mark.slow
def test_deployable_policy_exports_to_onnx_with_dynamic_batch(tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    policy = small_policy()
    path = tmp_path / "policy.onnx"
    batch = torch.export.Dim("batch", min=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            policy,
            inputs(2),
            str(path),
            input_names=["image", "joint"],
            output_names=["action"],
            dynamo=True,
            external_data=False,
            dynamic_shapes=({0: batch}, {0: batch}),
            verbose=False,
        )
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (1, 3):
        image, joint = inputs(batch)
        (action,) = session.run(["action"], {"image": image.numpy(), "joint": joint.numpy()})
        np.testing.assert_allclose(action, policy(image, joint).detach().numpy(), atol=1e-4)
