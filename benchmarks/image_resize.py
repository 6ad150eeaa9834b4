"""Image resize: the project's resize_rgb against one-step INTER_AREA and plain bilinear.

Prints time per image and fidelity (PSNR against one-step INTER_AREA, the quality
reference) for a camera frame resized to the model's input size, as a markdown table with
ratios against INTER_AREA measured in the same run.

    python benchmarks/image_resize.py [--quick] [--out FILE.md]
"""

from __future__ import annotations

import argparse
import sys
import time

import cv2
import numpy as np

from lapo_ros.common.images import resize_rgb


def textured_frame(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Fine stripes, a 3-px checkerboard and noise: the detail that aliasing destroys."""
    y, x = np.mgrid[0:height, 0:width]
    rng = np.random.default_rng(seed)
    return np.stack([
        (127 + 120 * np.sin(x * 0.9 + y * 0.2)).astype(np.uint8),
        ((x // 3 + y // 3) % 2 * 255).astype(np.uint8),
        rng.integers(0, 256, (height, width), dtype=np.uint8),
    ], axis=-1)


def time_per_call_ms(function, repeats: int) -> float:
    function()
    start = time.perf_counter()
    for _ in range(repeats):
        function()
    return (time.perf_counter() - start) / repeats * 1e3


def psnr(image: np.ndarray, reference: np.ndarray) -> float:
    mse = float(np.mean((image.astype(np.float64) - reference) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--out", help="also write the table to this markdown file")
    args = parser.parse_args(argv)
    repeats = 30 if args.quick else 300
    frame = textured_frame(480, 640)
    size = (224, 224)
    methods = {
        "cv2 INTER_AREA (baseline)": lambda: cv2.resize(frame, size[::-1],
                                                        interpolation=cv2.INTER_AREA),
        "cv2 INTER_LINEAR": lambda: cv2.resize(frame, size[::-1],
                                               interpolation=cv2.INTER_LINEAR),
        "resize_rgb (project)": lambda: resize_rgb(frame, size),
    }
    reference = methods["cv2 INTER_AREA (baseline)"]().astype(np.float64)
    baseline_ms = None
    lines = [
        f"480x640 rgb8 -> {size[0]}x{size[1]}, {repeats} repetitions, "
        f"OpenCV {cv2.__version__} with {cv2.getNumThreads()} threads",
        "",
        "| method | ms / image | speed vs INTER_AREA | PSNR vs INTER_AREA (dB) |",
        "|---|---|---|---|",
    ]
    for name, function in methods.items():
        ms = time_per_call_ms(function, repeats)
        baseline_ms = baseline_ms or ms
        quality = psnr(function(), reference)
        quality_text = "reference" if np.isinf(quality) else f"{quality:.1f}"
        lines.append(f"| {name} | {ms:.3f} | {baseline_ms / ms:.1f}x | {quality_text} |")
    table = "\n".join(lines)
    print(table)
    if args.out:
        command = "python benchmarks/image_resize.py" + (" --quick" if args.quick else "")
        with open(args.out, "w") as out:
            out.write(f"{table}\n\nCommand: `{command}`\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
