"""Random-shift augmentation (DrQ) of training images."""

import numpy as np
import pytest
import torch

from lapo_ros.lapo.data.augmentation import random_shift, shift_pixels


def generator(seed: int = 0) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def test_shift_bound_scales_with_the_image_side():
    assert shift_pixels(0.05, 84) == 4  # DrQ's 4 px at 84 px
    assert shift_pixels(0.05, 224) == 11
    assert shift_pixels(0.0, 224) == 0


def test_each_sample_moves_as_a_whole_within_the_bound():
    side, pad = 12, 2
    ramp = torch.arange(side * side, dtype=torch.int64).reshape(side, side)
    image = ramp.expand(64, 9, side, side).to(torch.uint8)
    shifted = random_shift(image, pad, generator())
    assert shifted.shape == image.shape and shifted.dtype == image.dtype
    offsets = set()
    for sample in shifted.long():
        assert all(torch.equal(sample[0], channel) for channel in sample)  # cameras together
        # the centre pixel tells the offset: rows move by side, columns by one
        centre = int(sample[0, side // 2, side // 2]) - int(ramp[side // 2, side // 2])
        dy, dx = divmod(centre + pad * side + pad, side)
        dy, dx = dy - pad, dx - pad
        assert max(abs(dy), abs(dx)) <= pad
        rows = (torch.arange(side) + dy).clamp(0, side - 1)
        cols = (torch.arange(side) + dx).clamp(0, side - 1)
        assert torch.equal(sample[0], ramp[rows][:, cols])  # border pixels repeated
        offsets.add((dy, dx))
    assert len(offsets) > 10  # 25 possible offsets, drawn per sample


def test_no_shift_and_reproducible():
    image = torch.randint(0, 255, (4, 9, 16, 16), dtype=torch.uint8)
    assert random_shift(image, 0, generator()) is image
    assert torch.equal(random_shift(image, 2, generator(3)), random_shift(image, 2, generator(3)))


@pytest.mark.parametrize("algo", ["lapo", "bc"])
def test_agents_shift_training_images_only(algo):
    from lapo_ros.lapo import BehaviorCloning, DatasetStatistics, MultimodalLatent

    zeros, ones = np.zeros(4, np.float32), np.ones(4, np.float32)
    statistics = DatasetStatistics(zeros, ones, zeros, ones, -ones, ones, 0.0, 1.0, 10)
    cls = MultimodalLatent if algo == "lapo" else BehaviorCloning
    agent = cls(action_dim=4, statistics=statistics, device="cpu", image_size=32,
                random_shift=0.1)
    image = torch.randint(0, 255, (8, 9, 32, 32), dtype=torch.uint8)
    assert not torch.equal(agent._training_images(image), image)
    frame = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    joint = np.zeros(4, np.float32)
    first = agent.select_action(frame, frame, frame, joint)
    assert np.array_equal(first, agent.select_action(frame, frame, frame, joint))
