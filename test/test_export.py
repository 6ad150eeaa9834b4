"""Policy file export: ONNX and TorchScript round trips, self-verification, atomicity."""

from __future__ import annotations

import importlib.util
import json
import sys
import zipfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from torch import nn

from lapo_ros.common.policy_file import METADATA_KEY, PolicyMetadata, PolicyMetadataError
from lapo_ros.lapo.export import (
    PolicyExportError,
    export_policy,
    load_policy_runner,
    random_policy_inputs,
    read_policy_metadata,
)

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning:torch.jit")

REPO = Path(__file__).resolve().parents[1]
JOINTS = ["left_j1", "left_j2", "right_j1", "right_j2"]


class TinyPolicy(nn.Module):
    """uint8 images + joints in robot units -> actions in robot units, normalising inside."""

    def __init__(self, joint_dim: int = 4, action_dim: int = 3) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(9, 8, 3, stride=2),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Linear(8 + joint_dim, action_dim)
        self.register_buffer("joint_mean", torch.randn(joint_dim))
        self.register_buffer("action_scale", torch.rand(action_dim) + 0.5)

    def forward(self, image: torch.Tensor, joint: torch.Tensor) -> torch.Tensor:
        features = self.conv(image.float() / 255.0)
        return self.head(torch.cat([features, joint - self.joint_mean], dim=1)) * self.action_scale


class NoisyPolicy(TinyPolicy):
    """Not a function of its inputs: the exported file cannot reproduce it."""

    def forward(self, image: torch.Tensor, joint: torch.Tensor) -> torch.Tensor:
        action = super().forward(image, joint)
        return action + torch.rand_like(action)


class WrongShapePolicy(TinyPolicy):
    def forward(self, image: torch.Tensor, joint: torch.Tensor) -> torch.Tensor:
        return super().forward(image, joint)[:, :2]


@pytest.fixture
def metadata() -> PolicyMetadata:
    return PolicyMetadata(
        joint_names=JOINTS,
        image_size=[24, 32],
        action_dim=3,
        joint_dim=4,
        rate_hz=15.0,
        training_run={"run_dir": "runs/test", "step": 7},
    )


def _trained(module: nn.Module) -> nn.Module:
    """Give BatchNorm non-trivial running statistics, as after training."""
    torch.manual_seed(0)
    module.train()
    with torch.no_grad():
        module(torch.randint(0, 256, (4, 9, 24, 32), dtype=torch.uint8), torch.randn(4, 4))
    return module.eval()


@pytest.mark.parametrize("suffix", [".onnx", ".pt"])
def test_round_trip_matches_eager_at_any_batch(tmp_path, metadata, suffix):
    module = _trained(TinyPolicy())
    path = export_policy(module, metadata, tmp_path / f"policy{suffix}")

    assert read_policy_metadata(path) == metadata
    run = load_policy_runner(path)
    for batch in (1, 5):
        image, joint = random_policy_inputs(metadata, batch, seed=batch + 10)
        with torch.no_grad():
            expected = module(image, joint).numpy()
        actual = run(image.numpy(), joint.numpy())
        assert actual.dtype == np.float32
        np.testing.assert_allclose(actual, expected, atol=1e-4)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"policy{suffix}"]


def test_onnx_contract_names_types_and_metadata(tmp_path, metadata):
    path = export_policy(_trained(TinyPolicy()), metadata, tmp_path / "policy.onnx")

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inputs = {i.name: i for i in session.get_inputs()}
    assert list(inputs) == ["image", "joint"]
    assert inputs["image"].type == "tensor(uint8)"
    assert inputs["joint"].type == "tensor(float)"
    assert not isinstance(inputs["image"].shape[0], int)  # dynamic batch axis
    assert [o.name for o in session.get_outputs()] == ["action"]
    stored = session.get_modelmeta().custom_metadata_map[METADATA_KEY]
    assert json.loads(stored)["joint_names"] == JOINTS


def test_torchscript_extra_file_agrees_with_torch(tmp_path, metadata):
    path = export_policy(_trained(TinyPolicy()), metadata, tmp_path / "policy.pt")

    extra = {METADATA_KEY: ""}
    torch.jit.load(str(path), _extra_files=extra)
    assert PolicyMetadata.from_json(extra[METADATA_KEY]) == read_policy_metadata(path)


@pytest.mark.parametrize("suffix", [".onnx", ".pt"])
def test_disagreeing_export_fails_loudly_and_keeps_old_file(tmp_path, metadata, suffix):
    path = tmp_path / f"policy{suffix}"
    export_policy(_trained(TinyPolicy()), metadata, path)
    before = path.read_bytes()

    with pytest.raises(PolicyExportError, match="differs from the eager module"):
        export_policy(_trained(NoisyPolicy()), metadata, path)

    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_wrong_output_shape_is_rejected_before_writing(tmp_path, metadata):
    with pytest.raises(PolicyExportError, match=r"shape \[2, 3\], got \[2, 2\]"):
        export_policy(WrongShapePolicy(), metadata, tmp_path / "policy.onnx")
    assert list(tmp_path.iterdir()) == []


def test_bad_example_inputs_and_suffix(tmp_path, metadata):
    module = TinyPolicy()
    image, joint = random_policy_inputs(metadata, 2)
    with pytest.raises(PolicyExportError, match="uint8"):
        export_policy(module, metadata, tmp_path / "p.onnx", (image.float(), joint))
    with pytest.raises(PolicyExportError, match=r"\[B,4\]"):
        export_policy(module, metadata, tmp_path / "p.onnx", (image, joint[:, :3]))
    with pytest.raises(PolicyExportError, match="unknown policy file type '.tflite'"):
        export_policy(module, metadata, tmp_path / "p.tflite")
    assert list(tmp_path.iterdir()) == []


def test_reading_metadata_from_files_without_it(tmp_path, metadata):
    module = _trained(TinyPolicy())
    image, joint = random_policy_inputs(metadata, 2)
    bare_onnx = tmp_path / "bare.onnx"
    torch.onnx.export(
        module,
        (image, joint),
        str(bare_onnx),
        input_names=["image", "joint"],
        output_names=["action"],
        dynamo=True,
        external_data=False,
    )
    assert onnx.load(str(bare_onnx)).graph.node  # a real model, just no metadata
    with pytest.raises(PolicyMetadataError, match=r"bare\.onnx: no 'lapo_ros' metadata"):
        read_policy_metadata(bare_onnx)

    bare_pt = tmp_path / "bare.pt"
    torch.jit.save(torch.jit.trace(module, (image, joint)), str(bare_pt))
    with pytest.raises(PolicyMetadataError, match=r"bare\.pt: no 'lapo_ros' metadata"):
        read_policy_metadata(bare_pt)

    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a zip")
    with pytest.raises(PolicyMetadataError, match="garbage.pt: not a TorchScript archive"):
        read_policy_metadata(garbage)
    with pytest.raises(PolicyMetadataError, match="missing.onnx: no such policy file"):
        read_policy_metadata(tmp_path / "missing.onnx")


def test_metadata_of_another_format_version_is_refused(tmp_path, metadata):
    path = export_policy(_trained(TinyPolicy()), metadata, tmp_path / "policy.pt")
    data = json.loads(read_policy_metadata(path).to_json())
    data["format_version"] = 99
    patched = tmp_path / "patched.pt"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(patched, "w") as dst:
        for item in src.infolist():
            payload = src.read(item.filename)
            if item.filename.endswith(f"/extra/{METADATA_KEY}"):
                payload = json.dumps(data).encode()
            dst.writestr(item, payload)
    with pytest.raises(PolicyMetadataError, match="format_version 99"):
        read_policy_metadata(patched)


# ------------------------------------------------------------ from a training checkpoint
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    from lapo_ros.lapo.training.config import load_train_config
    from lapo_ros.lapo.training.trainer import train

    sys.path.insert(0, str(Path(__file__).parent))
    from training_fixtures import write_dataset

    root = tmp_path_factory.mktemp("run")
    data = write_dataset(root / "data.hdf5", episodes=3, steps=5)
    config = load_train_config(
        None,
        {
            "data": [str(data)],
            "out": str(root / "run"),
            "steps": 2,
            "batch_size": 2,
            "image_size": 32,
            "device": "cpu",
            "num_workers": 0,
            "val_batches": 1,
        },
    )
    return train(config).last_checkpoint


def _cli(*args: str) -> int:
    spec = importlib.util.spec_from_file_location("export_cli", REPO / "training" / "export.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main(list(args))


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".onnx", ".pt"])
def test_checkpoint_export_is_self_describing_and_acts_like_the_agent(tmp_path, checkpoint, suffix):
    from lapo_ros.lapo.training.checkpoint import load_trained_agent

    out = tmp_path / f"policy{suffix}"
    assert _cli("--checkpoint", str(checkpoint), "--out", str(out)) == 0
    metadata = read_policy_metadata(out)
    assert metadata.joint_names == [
        "left_shoulder",
        "left_gripper",
        "right_shoulder",
        "right_gripper",
    ]
    assert metadata.image_size == [32, 32] and metadata.rate_hz == 10.0
    assert (metadata.action_dim, metadata.joint_dim) == (4, 4)
    assert metadata.camera_order == ["left", "right", "global"]
    assert metadata.training_run["step"] == 2 and metadata.training_run["algo"] == "lapo"
    assert metadata.training_run["checkpoint"] == str(checkpoint.resolve())

    agent, _ = load_trained_agent(checkpoint)
    rng = np.random.default_rng(3)
    cameras = [rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(3)]
    joint = rng.normal(size=4).astype(np.float32)
    expected = agent.select_action(*cameras, joint)  # resizes 48x64 -> 32x32 inside
    from lapo_ros.lapo.models.policy import observation_arrays

    image, joint_array = observation_arrays(*cameras, joint, 32, 4)
    action = load_policy_runner(out)(image[None], joint_array[None])[0]
    np.testing.assert_allclose(action, expected, atol=1e-4)


def test_an_agents_own_save_exports_with_its_joint_names_and_rate(tmp_path, checkpoint):
    """The seed API: ``MultimodalLatent.save()`` without a training run around it."""
    from lapo_ros.lapo.training.checkpoint import load_trained_agent

    agent, _ = load_trained_agent(checkpoint)
    plain = tmp_path / "plain.pt"
    agent.save(plain)
    out = tmp_path / "policy.onnx"
    assert _cli("--checkpoint", str(plain), "--out", str(out)) == 0
    metadata = read_policy_metadata(out)
    assert metadata.joint_names == agent.joint_names and len(agent.joint_names) == 4
    assert metadata.rate_hz == 10.0 and metadata.image_size == [32, 32]
    assert metadata.training_run == {}


def test_export_refuses_bad_paths_and_leaves_nothing(tmp_path, checkpoint, capsys):
    out = tmp_path / "policy.onnx"
    assert _cli("--checkpoint", str(checkpoint), "--out", str(tmp_path / "p.tflite")) == 2
    assert "unknown policy file type '.tflite'" in capsys.readouterr().err
    assert _cli("--checkpoint", str(tmp_path / "none.pt"), "--out", str(out)) == 2
    assert "none.pt: no such checkpoint" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
