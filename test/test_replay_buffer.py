"""MultimodalReplayBuffer and the training loader on real HDF5 files."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch
from hdf5_test_data import (
    JOINT_NAMES,
    assert_batch_consistent,
    coded_episodes,
    write_aloha_file,
    write_seed_file,
)

from lapo_ros.common.images import resize_rgb, stack_cameras
from lapo_ros.dataset.episodes import AlohaLayout, DatasetReadError
from lapo_ros.dataset.layout import write_episodes
from lapo_ros.lapo import MultimodalReplayBuffer, TransitionBatch
from lapo_ros.lapo.data.step_batches import step_batches

LENGTHS = [5, 4, 6, 1, 3]
TERMINALS = [True, False, True, False, False]  # 5 + 3 + 6 + 0 + 2 = 16 transitions


@pytest.fixture
def data_file(tmp_path):
    path = tmp_path / "data.hdf5"
    write_episodes(path, coded_episodes(LENGTHS, TERMINALS), joint_names=JOINT_NAMES, rate_hz=20.0)
    return path


def _buffer(path=None, **kwargs) -> MultimodalReplayBuffer:
    buffer = MultimodalReplayBuffer(action_dim=16, joint_dim=16, image_size=16, **kwargs)
    if path is not None:
        buffer.load_from_hdf5(path)
    return buffer


def _all_transitions(buffer) -> set[tuple[int, int, float]]:
    seen = set()
    for _ in range(40):
        batch = buffer.sample(16)
        assert_batch_consistent(batch)
        seen |= set(
            zip(
                batch.joint[:, 0].int().tolist(),
                batch.next_joint[:, 0].int().tolist(),
                batch.not_done[:, 0].tolist(),
                strict=True,
            )
        )
    return seen


def test_transitions_stay_inside_episodes(data_file):
    buffer = _buffer(data_file)
    assert buffer.num_episodes == 5 and buffer.num_transitions == 16
    assert buffer.episode_lengths.tolist() == LENGTHS
    expected = (
        {(t, t + 1, 1.0) for t in range(0, 4)}
        | {(4, 4, 0.0)}  # terminal: next = itself
        | {(t, t + 1, 1.0) for t in range(5, 8)}  # timeout: step 8 is no transition
        | {(t, t + 1, 1.0) for t in range(9, 14)}
        | {(14, 14, 0.0)}
        | {(t, t + 1, 1.0) for t in range(16, 18)}  # 15: a one-step timeout episode
    )
    assert _all_transitions(buffer) == expected


def test_size_is_the_seeds_name_for_the_transitions_loaded(data_file, tmp_path):
    buffer = _buffer(data_file)
    assert buffer.size == buffer.num_transitions == 16
    more = tmp_path / "more.hdf5"
    write_episodes(more, coded_episodes([3], [True]), joint_names=JOINT_NAMES, rate_hz=20.0)
    buffer.load_from_hdf5(more)
    assert buffer.size == 16 + 3


def test_batch_types_shapes_and_stacking(data_file):
    batch = _buffer(data_file).sample(8)
    assert isinstance(batch, TransitionBatch) and len(batch) == 8
    assert batch.image.dtype == torch.uint8 and batch.image.shape == (8, 9, 16, 16)
    assert batch.image.is_contiguous()
    assert batch.joint.dtype == batch.reward.dtype == batch.not_done.dtype == torch.float32
    assert batch.reward.shape == batch.not_done.shape == (8, 1)
    steps = batch.joint[:, 0].numpy()
    assert np.array_equal(batch.reward[:, 0].numpy(), steps % 7 - 3)


def test_resize_only_when_stored_size_differs(data_file):
    buffer = MultimodalReplayBuffer(image_size=24)
    buffer.load_from_hdf5(data_file)
    batch = buffer.sample(8)
    assert batch.image.shape == (8, 9, 24, 24)
    assert_batch_consistent(batch)  # constant frames stay constant when resized
    episode = buffer.episode(0)
    assert episode.left_image.shape == (5, 24, 24, 3)


@pytest.mark.parametrize("chw", [False, True])
def test_seed_and_aloha_files_sample_consistently(tmp_path, chw):
    episodes = coded_episodes([4, 3, 5], [True, False, True])
    write_seed_file(tmp_path / "seed.hdf5", episodes[:2], chw=chw, two_d=True, compression="lzf")
    cameras = {"left": "l", "right": "r", "global": "g"}
    write_aloha_file(tmp_path / "episode_7.hdf5", episodes[2], cameras)
    buffer = MultimodalReplayBuffer(image_size=16, aloha=AlohaLayout(cameras=cameras,
                                                                     assume_success=True))
    assert buffer.load_from_hdf5([tmp_path / "seed.hdf5", tmp_path / "episode_7.hdf5"]) == 3
    assert buffer.num_transitions == 4 + 2 + 5
    seen = _all_transitions(buffer)
    assert (3, 3, 0.0) in seen and (6, 6, 0.0) not in seen and (11, 11, 0.0) in seen


def test_in_memory_episodes_and_images_in_memory(data_file):
    from_ram = _buffer()
    assert from_ram.add_episodes(coded_episodes(LENGTHS, TERMINALS)) == 5
    assert _all_transitions(from_ram) == _all_transitions(_buffer(data_file))
    in_memory = _buffer(data_file, images_in_memory=True)
    assert {s.images["left"].access for s in in_memory.sources} == {"memory"}
    assert_batch_consistent(in_memory.sample(16))


def test_statistics_and_value_bounds(data_file):
    buffer = _buffer(data_file)
    episodes = coded_episodes(LENGTHS, TERMINALS)
    joint = np.concatenate([e.joint for e in episodes])
    action = np.concatenate([e.action for e in episodes])
    stats = buffer.statistics
    assert stats is buffer.statistics  # computed once
    np.testing.assert_allclose(stats.joint_mean, joint.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(stats.joint_std, joint.std(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(stats.action_min, action.min(0))
    np.testing.assert_allclose(stats.action_max, action.max(0))
    # rewards of transition steps only: timed-out last steps 8, 15, 18 are excluded
    used = [t for t in range(19) if t not in (8, 15, 18)]
    rewards = np.array(used) % 7 - 3
    assert (stats.reward_min, stats.reward_max) == (rewards.min(), rewards.max())
    assert stats.num_transitions == 16
    min_v, max_v = stats.value_bounds(0.99)
    assert min_v == pytest.approx(-300.0) and max_v == pytest.approx(300.0)


def test_a_constant_joint_normalises_to_zero_not_infinity(tmp_path):
    from lapo_ros.lapo.models.normalization import JointNormalizer

    episodes = coded_episodes([3], [True])
    episodes[0].joint[:, 5] = 0.25
    buffer = _buffer()
    buffer.add_episodes(episodes)
    assert buffer.statistics.joint_std[5] == 0  # as the data has it; the floor is the model's
    normalized = JointNormalizer(buffer.statistics, 16)(torch.from_numpy(episodes[0].joint))
    assert torch.isfinite(normalized).all() and torch.equal(normalized[:, 5], torch.zeros(3))


def test_split_is_by_whole_episode_and_seeded(data_file):
    buffer = _buffer(data_file)
    train, val = buffer.split(0.4, seed=3)
    assert (train.num_episodes, val.num_episodes) == (3, 2)
    train_steps = {t for t, _, _ in _all_transitions(train)}
    val_steps = {t for t, _, _ in _all_transitions(val)}
    assert train_steps.isdisjoint(val_steps)
    assert len(train_steps | val_steps) == 16
    again_train, _ = buffer.split(0.4, seed=3)
    assert again_train.data_identity == train.data_identity
    assert train.statistics.num_transitions == train.num_transitions
    with pytest.raises(ValueError, match="val_fraction"):
        buffer.split(1.0)


def test_seeded_sampling_repeats(data_file):
    first, second = _buffer(data_file, seed=7), _buffer(data_file, seed=7)
    for _ in range(3):
        a, b = first.sample(8), second.sample(8)
        assert torch.equal(a.joint, b.joint) and torch.equal(a.image, b.image)
    assert not torch.equal(_buffer(data_file, seed=8).sample(8).joint, a.joint)


def test_returned_batches_do_not_alias_the_reused_buffer(data_file):
    buffer = _buffer(data_file)
    first = buffer.sample(16)
    kept = first.image.clone(), first.joint.clone()
    buffer.sample(16)
    assert torch.equal(first.image, kept[0]) and torch.equal(first.joint, kept[1])


def test_episode_round_trip(data_file):
    buffer = _buffer(data_file)
    original = coded_episodes(LENGTHS, TERMINALS)[2]
    episode = buffer.episode(2)
    assert episode.terminal is True and len(episode) == 6
    for name in ("left_image", "right_image", "global_image", "joint", "action", "reward"):
        assert np.array_equal(getattr(episode, name), getattr(original, name)), name
    with pytest.raises(IndexError):
        buffer.episode(5)


def test_data_identity_names_files_and_changes_with_episodes(data_file, tmp_path):
    buffer = _buffer(data_file)
    identity = buffer.data_identity
    assert identity["files"][0]["path"] == str(data_file.resolve())
    assert identity["files"][0]["size"] == data_file.stat().st_size
    json.dumps(identity)  # plain JSON types, for the training record
    assert buffer.joint_names == JOINT_NAMES and buffer.rate_hz == 20.0
    other = tmp_path / "other.hdf5"
    write_episodes(
        other, coded_episodes([5, 5, 6, 1, 3], TERMINALS), joint_names=JOINT_NAMES, rate_hz=20.0
    )
    assert _buffer(other).data_identity["episode_ends_sha256"] != identity["episode_ends_sha256"]


def test_incompatible_data_is_refused(data_file, tmp_path):
    with pytest.raises(DatasetReadError, match=r"data.hdf5: /observations/joint has 16 joints"):
        MultimodalReplayBuffer(joint_dim=14, image_size=16).load_from_hdf5(data_file)
    with pytest.raises(DatasetReadError, match=r"/actions has dimension 16.*action_dim=8"):
        MultimodalReplayBuffer(action_dim=8, image_size=16).load_from_hdf5(data_file)
    renamed = tmp_path / "renamed.hdf5"
    write_episodes(
        renamed, coded_episodes([3], [True]), joint_names=[f"j{i}" for i in range(16)], rate_hz=20.0
    )
    buffer = _buffer(data_file)
    with pytest.raises(DatasetReadError, match="renamed.hdf5: joint_names"):
        buffer.load_from_hdf5(renamed)
    assert buffer.num_episodes == 5  # nothing added
    with pytest.raises(ValueError, match="empty"):
        _buffer().sample(4)


def test_only_timed_out_single_steps_cannot_train(tmp_path):
    path = tmp_path / "short.hdf5"
    write_episodes(
        path, coded_episodes([1, 1], [False, False]), joint_names=JOINT_NAMES, rate_hz=10
    )
    with pytest.raises(DatasetReadError, match="no transitions"):
        _buffer(path).sample(2)


def _steps(buffer, seed=1, steps=12, num_workers=0, batch_size=8):
    return list(step_batches(buffer, seed=seed, rank=0, batch_size=batch_size, first_step=0,
                             last_step=steps, device=torch.device("cpu"),
                             num_workers=num_workers))


@pytest.mark.parametrize("num_workers", [0, 2])
def test_step_batches_are_consistent(data_file, num_workers):
    buffer = _buffer(data_file)
    buffer.sample(4)  # files opened in this process before the workers fork
    batches = _steps(buffer, num_workers=num_workers)
    for batch in batches:  # later batches never overwrote earlier ones
        assert batch.image.shape == (8, 9, 16, 16) and batch.image.device.type == "cpu"
        assert_batch_consistent(batch)
    steps = {t for b in batches for t in b.joint[:, 0].int().tolist()}
    assert len(steps) > 8


def test_step_batches_are_a_function_of_seed_and_step_not_of_workers(data_file):
    buffer = _buffer(data_file)
    buffer.sample(4)
    serial, parallel = _steps(buffer, seed=4), _steps(buffer, seed=4, num_workers=2)
    assert all(torch.equal(a.joint, b.joint) and torch.equal(a.image, b.image)
               for a, b in zip(serial, parallel, strict=True))
    assert not torch.equal(serial[0].joint, _steps(buffer, seed=5, steps=1)[0].joint)


def test_step_batches_read_the_h5py_fallback_in_workers(tmp_path):
    path = tmp_path / "gzip.hdf5"
    write_episodes(
        path,
        coded_episodes(LENGTHS, TERMINALS),
        joint_names=JOINT_NAMES,
        rate_hz=20.0,
        compression="gzip",
    )
    buffer = _buffer(path)
    buffer.sample(4)
    with h5py.File(path, "r"):  # another open handle in the parent does not matter
        for batch in _steps(buffer, seed=0, steps=4, num_workers=2):
            assert_batch_consistent(batch)


def _textured(lengths, size=12):
    """Coded episodes with random pixels, so transposed or swapped channels show."""
    episodes = coded_episodes(lengths, [True] * len(lengths), size=size)
    rng = np.random.default_rng(5)
    for episode in episodes:
        for camera in ("left", "right", "global"):
            frames = getattr(episode, f"{camera}_image")
            setattr(episode, f"{camera}_image", rng.integers(0, 256, frames.shape, np.uint8))
    return episodes


def _expected_images(episodes, steps, size):
    left, right, global_ = (
        np.concatenate([getattr(e, f"{c}_image") for e in episodes])
        for c in ("left", "right", "global")
    )
    return np.stack(
        [
            stack_cameras(
                *(resize_rgb(frames[t], (size, size)) for frames in (left, right, global_))
            )
            for t in steps
        ]
    )


@pytest.mark.parametrize("chw_file", [False, True])
@pytest.mark.parametrize("size", [12, 9, 20])
def test_pixels_match_the_shared_image_path(tmp_path, chw_file, size):
    episodes = _textured([4, 5])
    path = tmp_path / "textured.hdf5"
    if chw_file:
        write_seed_file(path, episodes, chw=True, two_d=False)
    else:
        write_episodes(path, episodes, joint_names=JOINT_NAMES, rate_hz=10.0)
    buffer = MultimodalReplayBuffer(image_size=size)
    buffer.load_from_hdf5(path)
    batches = [buffer.sample(8), *_steps(buffer, seed=2, steps=2)]
    for batch in batches:
        for images, joints in ((batch.image, batch.joint), (batch.next_image, batch.next_joint)):
            steps = joints[:, 0].int().numpy()
            assert np.array_equal(images.numpy(), _expected_images(episodes, steps, size))
    for layout in ("HWC", "CHW"):
        sampler = buffer.sampler(layout)
        raw = sampler.fill(np.arange(5), sampler.allocate(5))
        frames = raw.image if layout == "CHW" else raw.image.transpose(0, 1, 4, 2, 3)
        expected = _expected_images(episodes, raw.joint[:, 0].astype(int), size)
        assert np.array_equal(frames.reshape(expected.shape), expected)


def _expected_return(step: int, discount: float) -> float:
    """The recorded discounted return from global ``step`` (NaN in a timed-out episode)."""
    first = 0
    for length, terminal in zip(LENGTHS, TERMINALS, strict=True):
        if step < first + length:
            if not terminal:
                return float("nan")
            return sum(discount ** (k - step) * float(k % 7 - 3)
                       for k in range(step, first + length))
        first += length
    raise AssertionError(step)


def _episode_of(step: int) -> int:
    return int(np.searchsorted(np.cumsum(LENGTHS), step, side="right"))


@pytest.mark.parametrize("num_workers", [0, 2])
def test_batches_carry_episode_step_and_return_to_go_under_the_given_discount(data_file,
                                                                             num_workers):
    buffer = _buffer(data_file)
    assert buffer.sample(8).return_to_go is None  # no discount, no returns
    batches = [buffer.sample(16, discount=0.9) for _ in range(10)]
    batches += list(step_batches(buffer, seed=2, rank=0, batch_size=8, first_step=0,
                                 last_step=6, device=torch.device("cpu"),
                                 num_workers=num_workers, discount=0.9))
    seen = set()
    for batch in batches:
        assert batch.episode.dtype == torch.int64 and batch.return_to_go.shape == (len(batch), 1)
        for step, episode, index, value in zip(
                batch.joint[:, 0].int().tolist(), batch.episode.tolist(), batch.step.tolist(),
                batch.return_to_go[:, 0].tolist(), strict=True):
            assert episode == _episode_of(step)
            assert index == step - int(np.sum(LENGTHS[:episode]))  # its index in the episode
            np.testing.assert_allclose(value, _expected_return(step, 0.9), rtol=1e-5,
                                       equal_nan=True)
            seen.add(step)
    assert {0, 4, 9, 14} <= seen  # both terminal episodes, first and last steps
    with pytest.raises(ValueError, match="discount"):
        buffer.sample(4, discount=1.5)


def test_episode_index_is_the_row_of_a_split_buffer(data_file):
    train, _ = _buffer(data_file).split(0.4, seed=0)
    kept = train.parent_episode_indices
    for _ in range(10):
        batch = train.sample(16)
        for step, episode in zip(batch.joint[:, 0].int().tolist(), batch.episode.tolist(),
                                 strict=True):
            assert kept[episode] == _episode_of(step)


def _expected_chunk(step: int, chunk_size: int) -> dict:
    """What a chunk from global step ``step`` of the coded episodes holds."""
    episode = _episode_of(step)
    first = int(np.sum(LENGTHS[:episode]))
    last_frame = first + LENGTHS[episode] - 1
    last_transition = last_frame if TERMINALS[episode] else last_frame - 1
    steps = min(chunk_size, last_transition - step + 1)
    frames = np.minimum(np.arange(step, step + chunk_size), last_frame)
    reward = np.where(np.arange(chunk_size) < steps,
                      (np.arange(step, step + chunk_size) % 7 - 3), 0.0)
    tail = step + steps - 1
    terminal = TERMINALS[episode] and tail == last_frame
    return {"steps": steps, "action": np.cos(frames[:, None] * np.arange(1, 17)),
            "reward": reward, "next_joint": tail if terminal else tail + 1,
            "not_done": 0.0 if terminal else 1.0}


@pytest.mark.parametrize("num_workers", [0, 2])
def test_action_chunks_stay_inside_their_episode_and_back_up_to_its_end(data_file,
                                                                        num_workers):
    buffer, chunk_size = _buffer(data_file), 3
    batches = [buffer.sample(16, discount=0.9, chunk_size=chunk_size) for _ in range(10)]
    batches += list(step_batches(buffer, seed=2, rank=0, batch_size=8, first_step=0,
                                 last_step=6, device=torch.device("cpu"),
                                 num_workers=num_workers, chunk_size=chunk_size))
    seen = set()
    for batch in batches:
        assert batch.action.shape == (len(batch), chunk_size, 16)
        assert batch.reward.shape == (len(batch), chunk_size)
        assert batch.chunk_steps.shape == (len(batch), 1)
        assert_batch_consistent(batch)  # s' is the frame after the chunk's last transition
        for row, step in enumerate(batch.joint[:, 0].int().tolist()):
            expected = _expected_chunk(step, chunk_size)
            assert batch.chunk_steps[row, 0] == expected["steps"]
            np.testing.assert_allclose(batch.action[row], expected["action"], atol=1e-6)
            np.testing.assert_allclose(batch.reward[row], expected["reward"])
            assert batch.next_joint[row, 0] == expected["next_joint"]
            assert batch.not_done[row, 0] == expected["not_done"]
            seen.add(step)
    assert {3, 4, 7, 13, 14, 17} <= seen  # chunks cut by terminal and timed-out ends
    single = buffer.sample(8)
    assert single.action.shape == (8, 16) and single.chunk_steps is None
    with pytest.raises(ValueError, match="chunk_size"):
        buffer.sample(4, chunk_size=0)
