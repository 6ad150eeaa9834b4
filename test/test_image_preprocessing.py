"""The shared image path decodes every supported encoding to the right RGB pixels."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from oversize_images import black_png
from sensor_msgs.msg import CompressedImage, Image

from lapo_ros.common.images import (
    CAMERA_ORDER,
    ImageConversionError,
    ImageTooLarge,
    compressed_msg_to_rgb,
    compressed_to_rgb,
    encoded_image_size,
    image_msg_to_rgb,
    image_to_rgb,
    resize_rgb,
    stack_cameras,
)


def rgb_pattern(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def encode(rgb: np.ndarray, encoding: str) -> np.ndarray:
    """The raw HxWxC pixels a camera driver would send for ``rgb`` in ``encoding``."""
    if encoding == "rgb8":
        return rgb
    if encoding in ("bgr8", "8UC3"):
        return rgb[..., ::-1]
    if encoding == "rgba8":
        return np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    if encoding == "bgra8":
        return np.dstack([rgb[..., ::-1], np.full(rgb.shape[:2], 17, np.uint8)])
    raise AssertionError(encoding)


def image_message(pixels: np.ndarray, encoding: str, padding: int = 0) -> Image:
    height, width = pixels.shape[:2]
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    step = width * channels + padding
    rows = np.full((height, step), 0xAB, np.uint8)  # padding bytes must be ignored
    rows[:, : width * channels] = pixels.reshape(height, -1)
    return Image(height=height, width=width, encoding=encoding, step=step, data=rows.tobytes())


@settings(max_examples=40, deadline=None)
@given(
    encoding=st.sampled_from(["rgb8", "bgr8", "rgba8", "bgra8", "8UC3"]),
    height=st.integers(1, 12),
    width=st.integers(1, 12),
    padding=st.integers(0, 9),
    seed=st.integers(0, 1000),
)
def test_color_encodings_with_row_padding_decode_to_rgb(encoding, height, width, padding, seed):
    rgb = rgb_pattern(height, width, seed)
    msg = image_message(encode(rgb, encoding), encoding, padding)
    decoded = image_msg_to_rgb(msg, source="left/image_raw")
    assert decoded.dtype == np.uint8 and decoded.flags.c_contiguous
    np.testing.assert_array_equal(decoded, rgb)


@pytest.mark.parametrize("encoding", ["mono8", "8UC1"])
@pytest.mark.parametrize("padding", [0, 3])
def test_mono_becomes_grey_rgb(encoding, padding):
    grey = np.arange(5 * 7, dtype=np.uint8).reshape(5, 7) * 7
    decoded = image_msg_to_rgb(image_message(grey, encoding, padding))
    np.testing.assert_array_equal(decoded, np.dstack([grey] * 3))


def test_known_pixel_values():
    # one red, one green pixel in bgr8: bytes B,G,R
    msg = Image(height=1, width=2, encoding="bgr8", step=6, data=bytes([0, 0, 255, 0, 255, 0]))
    np.testing.assert_array_equal(image_msg_to_rgb(msg), [[[255, 0, 0], [0, 255, 0]]])


def test_png_is_lossless_and_jpeg_close():
    rgb = rgb_pattern(32, 32)
    rgb[:16] = (200, 30, 60)  # flat 16x16 JPEG blocks (with 4:2:0 chroma) stay close
    ok, png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    message = CompressedImage(format="png", data=png.tobytes())
    np.testing.assert_array_equal(compressed_msg_to_rgb(message), rgb)
    ok, jpeg = cv2.imencode(
        ".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95]
    )
    decoded = compressed_to_rgb(jpeg.tobytes())
    assert decoded.shape == rgb.shape
    block = decoded[:8].astype(int)  # away from the noisy half (chroma upsampling blends)
    assert np.abs(block - np.array([200, 30, 60])).max() <= 4  # a colour swap gives 140


@pytest.mark.parametrize(
    ("msg", "message"),
    [
        (Image(height=2, width=2, encoding="16UC1", step=4, data=bytes(8)), "unsupported encoding"),
        (
            Image(height=2, width=2, encoding="rgb8", step=6, data=bytes(7)),
            "expected step\\*height",
        ),
        (Image(height=2, width=2, encoding="rgb8", step=5, data=bytes(12)), "step 5 is smaller"),
        (Image(height=0, width=2, encoding="rgb8", step=6, data=b""), "empty image"),
    ],
)
def test_bad_raw_images_name_the_topic(msg, message):
    with pytest.raises(ImageConversionError, match=f"right/image_raw: .*{message}"):
        image_msg_to_rgb(msg, source="right/image_raw")


def test_bad_compressed_images_name_the_topic():
    with pytest.raises(ImageConversionError, match="global/image_raw/compressed: empty"):
        compressed_to_rgb(b"", source="global/image_raw/compressed")
    with pytest.raises(ImageConversionError, match="not a decodable JPEG or PNG"):
        compressed_to_rgb(b"\x00garbage" * 10, source="left")


def test_resize_shrinks_by_area_and_grows_bilinear():
    checker = np.indices((64, 64)).sum(axis=0) % 2 * 255
    rgb = np.dstack([checker] * 3).astype(np.uint8)
    small = resize_rgb(rgb, (16, 16))
    assert small.shape == (16, 16, 3)
    assert np.abs(small.astype(int) - 128).max() <= 1  # area averaging: no aliasing
    assert resize_rgb(rgb, (64, 64)) is rgb
    grown = resize_rgb(rgb_pattern(4, 4), (8, 12))
    assert grown.shape == (8, 12, 3)


def test_stack_order_is_left_right_global():
    frames = [np.full((4, 5, 3), value, np.uint8) for value in (1, 2, 3)]
    for index, frame in enumerate(frames):
        frame[..., 1] += 10 * (index + 1)
    stacked = stack_cameras(*frames)
    assert stacked.shape == (9, 4, 5) and stacked.dtype == np.uint8
    assert CAMERA_ORDER == ("left", "right", "global")
    np.testing.assert_array_equal(stacked[:, 0, 0], [1, 11, 1, 2, 22, 2, 3, 33, 3])
    with pytest.raises(ImageConversionError, match="cameras differ in size"):
        stack_cameras(frames[0], frames[1], np.zeros((2, 2, 3), np.uint8))


def test_raw_fields_api_matches_message_api():
    rgb = rgb_pattern(3, 4)
    msg = image_message(encode(rgb, "bgr8"), "bgr8", padding=2)
    direct = image_to_rgb(msg.encoding, msg.height, msg.width, msg.step, bytes(msg.data))
    np.testing.assert_array_equal(direct, rgb)


@pytest.mark.parametrize(
    ("extension", "params"),
    [
        (".png", []),
        (".jpg", []),
        (".jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]),  # SOF2
        (".jpg", [cv2.IMWRITE_JPEG_OPTIMIZE, 1]),
    ],
)
@pytest.mark.parametrize(("height", "width"), [(1, 1), (37, 53), (480, 640)])
def test_encoded_size_is_read_from_the_header(extension, params, height, width):
    ok, data = cv2.imencode(extension, rgb_pattern(height, width), params)
    assert ok
    assert encoded_image_size(data.tobytes()) == (height, width)
    assert encoded_image_size(CompressedImage(data=data.tobytes()).data) == (height, width)


def test_jpeg_size_is_found_after_other_segments():
    ok, data = cv2.imencode(".jpg", rgb_pattern(20, 30))
    data = data.tobytes()
    comment = b"\xff\xfe" + (2 + 5000).to_bytes(2, "big") + bytes(5000)  # COM segment
    padded = data[:2] + b"\xff\xff" + comment + data[2:]  # a fill byte, then the segment
    assert encoded_image_size(padded) == (20, 30)
    assert compressed_to_rgb(padded, max_pixels=600).shape == (20, 30, 3)


@pytest.mark.parametrize(
    "data",
    [b"", b"garbage" * 10, b"\xff\xd8", b"\xff\xd8\xff\xda\x00\x02", b"\x89PNG\r\n\x1a\n\x00"],
)
def test_encoded_size_of_other_data_is_unknown(data):
    assert encoded_image_size(data) is None


def test_png_bomb_is_refused_from_its_header_without_decoding():
    bomb = black_png(12000, 12000)  # 137 KiB that decodes to 432 MB
    assert len(bomb) < 200_000
    assert encoded_image_size(bomb) == (12000, 12000)
    start = time.perf_counter()
    with pytest.raises(ImageTooLarge, match="left/image_raw/compressed: 12000x12000 image has "
                                             "144000000 pixels, more than the limit of 8294400"):
        compressed_to_rgb(bomb, source="left/image_raw/compressed", max_pixels=3840 * 2160)
    assert time.perf_counter() - start < 0.1  # decoding it takes seconds


def test_small_enough_compressed_images_decode_as_before():
    rgb = rgb_pattern(30, 40)
    ok, png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    np.testing.assert_array_equal(compressed_to_rgb(png, max_pixels=30 * 40), rgb)
    with pytest.raises(ImageTooLarge, match="40x30 image has 1200 pixels"):
        compressed_to_rgb(png, max_pixels=30 * 40 - 1)
    assert compressed_to_rgb(black_png(60, 70)).shape == (60, 70, 3)  # no limit: as before


def test_with_a_limit_only_png_and_jpeg_are_decoded():
    ok, bmp = cv2.imencode(".bmp", rgb_pattern(8, 8))
    assert compressed_to_rgb(bmp).shape == (8, 8, 3)  # no limit: whatever OpenCV reads
    with pytest.raises(ImageConversionError, match="right: not a PNG or JPEG image"):
        compressed_to_rgb(bmp, source="right", max_pixels=10_000)


def test_raw_image_over_the_limit_is_refused_before_conversion():
    msg = image_message(encode(rgb_pattern(40, 50), "bgr8"), "bgr8")
    assert image_msg_to_rgb(msg, max_pixels=2000).shape == (40, 50, 3)
    with pytest.raises(ImageTooLarge, match="global/image_raw: 50x40 image has 2000 pixels"):
        image_msg_to_rgb(msg, source="global/image_raw", max_pixels=1999)
    # the size check does not need the pixels: a header claiming a huge frame is refused
    huge = Image(height=100_000, width=100_000, encoding="rgb8", step=300_000, data=b"")
    with pytest.raises(ImageTooLarge):
        image_msg_to_rgb(huge, max_pixels=3840 * 2160)
