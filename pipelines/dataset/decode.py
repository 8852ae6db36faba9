"""Safe image decoding: byte, pixel and time limits; EXIF orientation; every mode to 8-bit RGB.

`decode_image(data, cfg)` returns an upright RGB `PIL.Image` or raises `Rejected`:
- more than `max_bytes` bytes, or a declared width x height over `max_pixels` (checked from the
  header, before any pixel is decoded: a 100 KB PNG can declare 900 Mpx) -> decompression_bomb;
- damaged or truncated files -> decode_error; decoding past `time_limit_s` -> decode_timeout (the
  limit interrupts PIL between chunks when the task runs on the main thread, as Ray tasks do);
- shorter side under `min_side` -> too_small; long/short side over `max_aspect_ratio` -> extreme_aspect.
Animated files give their first frame. 16-bit greyscale is scaled to 8 bits (PIL's own conversion
clips it to white), palette and alpha images are flattened onto white, CMYK and the rest go to RGB.
"""

from __future__ import annotations

import contextlib
import io
import signal
import threading
import warnings
from collections.abc import Iterator

import numpy as np
from PIL import Image, ImageFile, ImageOps

from pipelines.dataset.config import DecodeConfig
from pipelines.dataset.outcomes import Reason, Rejected

ImageFile.LOAD_TRUNCATED_IMAGES = False


class _DecodeTimeout(Exception):
    pass


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise _DecodeTimeout after `seconds` (SIGALRM; main thread only, else no limit but a check)."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return

    def on_alarm(signum: int, frame: object) -> None:
        raise _DecodeTimeout()

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB from any PIL mode, scaling 16/32-bit greyscale and flattening transparency on white."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(image, dtype=np.float64)
        high = 65535.0 if image.mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        grey = np.clip(arr / high * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    if image.mode == "P":
        image = image.convert("RGBA") if "transparency" in image.info else image.convert("RGB")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if image.mode != "RGB":
        return image.convert("RGB")
    return image


def decode_image(data: bytes, cfg: DecodeConfig, checks: bool = True) -> Image.Image:
    """See the module docstring; `checks=False` skips the size and aspect rules (not the limits)."""
    if len(data) > cfg.max_bytes:
        raise Rejected(Reason.DECOMPRESSION_BOMB, f"{len(data)} bytes > max_bytes {cfg.max_bytes}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > cfg.max_pixels:
                raise Rejected(Reason.DECOMPRESSION_BOMB, f"declares {width}x{height} > {cfg.max_pixels} pixels")
            if getattr(image, "n_frames", 1) > 1:
                image.seek(0)
            with time_limit(cfg.time_limit_s):
                image.load()
                image = ImageOps.exif_transpose(image)
                image = to_rgb(image)
    except Rejected:
        raise
    except _DecodeTimeout:
        raise Rejected(Reason.DECODE_TIMEOUT, f"decoding took over {cfg.time_limit_s} s") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise Rejected(Reason.DECOMPRESSION_BOMB, str(err).split(".")[0]) from None
    except Exception as err:  # PIL raises many types for damaged files: all are this row's problem
        raise Rejected(Reason.DECODE_ERROR, f"{err.__class__.__name__}: {err}"[:200]) from None
    width, height = image.size
    if not checks:
        return image
    if min(width, height) < cfg.min_side:
        raise Rejected(Reason.TOO_SMALL, f"{width}x{height}, shorter side under {cfg.min_side}")
    if max(width, height) / min(width, height) > cfg.max_aspect_ratio:
        raise Rejected(Reason.EXTREME_ASPECT, f"{width}x{height}, aspect over {cfg.max_aspect_ratio}")
    return image
