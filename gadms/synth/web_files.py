"""The files of the web corpus: one scene in many encodings and colour modes, and broken files.

Every encoder is deterministic (no timestamps, no random metadata). Each kept variant decodes, with
EXIF orientation applied and the first frame taken, to an image whose pixel coordinates match the
scene's ground truth.
"""

from __future__ import annotations

import io
import struct
import zlib
from functools import lru_cache

import numpy as np
from PIL import Image

EXIF_ORIENTATION_TAG = 0x0112
BOMB_SIDE = 30000


def _save(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def _frames(scene: Image.Image) -> list[Image.Image]:
    """An animation whose first frame is the scene; later frames pan and dim it."""
    shifted = Image.fromarray(np.roll(np.asarray(scene), scene.width // 7, axis=1))
    dimmed = Image.fromarray((np.asarray(scene).astype(np.uint16) * 3 // 5).astype(np.uint8))
    return [scene, shifted, dimmed]


def encode_variant(scene: Image.Image, variant: str) -> tuple[bytes, str]:
    """`scene` (RGB) encoded as `variant`; returns the bytes and the natural file extension."""
    if variant == "jpeg":
        return _save(scene, "JPEG", quality=88), "jpg"
    if variant == "png":
        return _save(scene, "PNG", compress_level=3), "png"
    if variant == "webp":
        return _save(scene, "WEBP", quality=82, method=2), "webp"
    if variant == "gif":
        return _save(scene.quantize(128, dither=Image.Dither.NONE), "GIF"), "gif"
    if variant == "grayscale_jpeg":
        return _save(scene.convert("L"), "JPEG", quality=88), "jpg"
    if variant == "palette_png":
        return _save(scene.quantize(64, dither=Image.Dither.NONE), "PNG"), "png"
    if variant == "cmyk_jpeg":
        return _save(scene.convert("CMYK"), "JPEG", quality=88), "jpg"
    if variant == "png_16bit":
        grey = np.asarray(scene.convert("L"), dtype=np.uint16) * 257  # full 16-bit range
        return _save(Image.fromarray(grey), "PNG"), "png"
    if variant == "rgba_png":
        rgba = scene.convert("RGBA")
        alpha = np.zeros((scene.height, scene.width), dtype=np.uint8)
        # a transparent 4-pixel frame: scene people keep >= 12 px from every edge (see scenes._place)
        alpha[4:-4, 4:-4] = 255
        rgba.putalpha(Image.fromarray(alpha))
        return _save(rgba, "PNG", compress_level=3), "png"
    if variant == "exif_rotated":
        stored = scene.transpose(Image.Transpose.ROTATE_90)  # viewers turn it back for orientation 6
        exif = Image.Exif()
        exif[EXIF_ORIENTATION_TAG] = 6
        return _save(stored, "JPEG", quality=88, exif=exif.tobytes()), "jpg"
    if variant == "animated_gif":
        frames = [f.quantize(128, dither=Image.Dither.NONE) for f in _frames(scene)]
        return _save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=200, loop=0), "gif"
    if variant == "animated_webp":
        frames = _frames(scene)
        data = _save(frames[0], "WEBP", save_all=True, append_images=frames[1:], duration=200, loop=0,
                     quality=80, method=2)  # fmt: skip
        return data, "webp"
    raise ValueError(f"unknown variant {variant!r}")


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


@lru_cache(maxsize=1)
def decompression_bomb_png(side: int = BOMB_SIDE) -> bytes:
    """A complete, valid 1-bit PNG of `side` x `side` black pixels: ~100 KB on disk, 900 Mpx decoded."""
    row = b"\x00" * (1 + (side + 7) // 8)  # filter byte + packed bits
    compressor = zlib.compressobj(9)
    parts = [compressor.compress(row) for _ in range(side)]
    idat = b"".join(parts) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # 1-bit greyscale, no interlace
    chunks = _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + chunks


def png_declared_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR, read without decoding anything."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        raise ValueError("not a PNG")
    return struct.unpack(">II", data[16:24])


def corrupt_png(data: bytes) -> bytes:
    """Damage the image data of a PNG (keeps the header, so it opens but cannot load)."""
    start = data.index(b"IDAT") + 4
    damaged = bytearray(data)
    for offset in range(start + 2, min(len(data) - 16, start + 2 + 4000), 7):
        damaged[offset] ^= 0x5A
    return bytes(damaged)


def noise_png(rng: np.random.Generator, min_bytes: int) -> bytes:
    """A valid PNG of random pixels (incompressible) at least `min_bytes` long."""
    side = int(np.ceil(np.sqrt(min_bytes / 3 * 1.05)))
    pixels = rng.integers(0, 256, size=(side, side, 3), dtype=np.uint8)
    data = _save(Image.fromarray(pixels, "RGB"), "PNG", compress_level=1)
    assert len(data) >= min_bytes
    return data


def tracking_pixel_gif() -> bytes:
    return _save(Image.new("P", (1, 1), 0), "GIF")
