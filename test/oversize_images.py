"""Small encoded images that decode to huge ones (not a fixture module).

A black greyscale PNG of 12000x12000 pixels is about 137 KiB on the wire and 432 MB once
``cv2.imdecode`` makes it BGR: the kind of frame ``max_image_pixels`` exists for.
"""

from __future__ import annotations

import struct
import zlib

_ROWS_PER_BLOCK = 500


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def black_png(height: int, width: int) -> bytes:
    """A valid, decodable 8-bit greyscale PNG of zeros, compressed row block by row block
    (the full image is never held in memory here)."""
    compressor = zlib.compressobj(9)
    row = bytes(width + 1)  # filter byte 0 + one byte per pixel
    parts = []
    for start in range(0, height, _ROWS_PER_BLOCK):
        parts.append(compressor.compress(row * min(_ROWS_PER_BLOCK, height - start)))
    parts.append(compressor.flush())
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8 bit, greyscale
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", b"".join(parts))
        + _chunk(b"IEND", b"")
    )
