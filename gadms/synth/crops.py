"""Person crops as a detector would cut them: one person, many "camera views" of the same identity.

Each view draws its own pose (facing, walk phase, arm spread), framing (person scale and position),
background (street, wall, park or indoor clutter), lighting (brightness, colour cast, a gradient),
partial occlusion (a pole, a bench or car in front of the legs, an object entering from the side),
blur and sensor noise. Two views of one identity therefore share the person, never the pixels.
Everything is drawn from the `np.random.Generator` passed in, so a view is a pure function of its
seed.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from gadms.synth.attributes import RGB, Identity
from gadms.synth.person import FACINGS, Pose, PersonGeometry, draw_person

BACKGROUNDS = ("street", "wall", "park", "indoor")
OCCLUDERS = ("none", "pole", "low", "side")


@dataclass(frozen=True)
class View:
    """One photo of a person: pose, framing and camera conditions."""

    pose: Pose
    person_frac: float  # person height / crop height
    x_shift: float  # horizontal offset of the person's centre, fraction of the crop width
    foot_margin: float  # gap under the feet, fraction of the crop height
    background: str
    occluder: str
    brightness: float
    tint: float  # > 0 warm, < 0 cool
    gradient: float  # strength of a left-to-right or top-to-bottom light falloff
    blur: float  # Gaussian blur radius in pixels at 128 px height (scaled with the crop)
    noise: float  # sensor noise standard deviation, in 8-bit levels


def sample_pose(rng: np.random.Generator, facings: tuple[str, ...] = FACINGS) -> Pose:
    walking = rng.random() < 0.75
    return Pose(
        facing=facings[int(rng.integers(len(facings)))],
        stride=float(rng.uniform(0.15, 0.42)) if walking else 0.0,
        phase=float(rng.uniform(-1.0, 1.0)),
        arm_spread=float(rng.uniform(0.04, 0.22)),
    )


def sample_view(rng: np.random.Generator, occlusion_prob: float = 0.25) -> View:
    occluded = rng.random() < occlusion_prob
    return View(
        pose=sample_pose(rng),
        person_frac=float(rng.uniform(0.8, 0.94)),
        x_shift=float(rng.uniform(-0.07, 0.07)),
        foot_margin=float(rng.uniform(0.01, 0.05)),
        background=BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))],
        occluder=OCCLUDERS[1 + int(rng.integers(3))] if occluded else "none",
        brightness=float(rng.uniform(0.72, 1.22)),
        tint=float(rng.uniform(-0.08, 0.08)),
        gradient=float(rng.uniform(0.0, 0.25)),
        blur=float(rng.choice([0.0, 0.0, 0.4, 0.8])),
        noise=float(rng.choice([0.0, 2.0, 4.0])),
    )


def _muted(rng: np.random.Generator, low: int = 60, high: int = 200, saturation: float = 0.25) -> RGB:
    """A background colour: mostly gray-ish, so it rarely competes with clothing colours."""
    grey = rng.uniform(low, high)
    channels = grey * (1 + rng.uniform(-saturation, saturation, size=3))
    return tuple(int(c) for c in np.clip(channels, 0, 255))  # type: ignore[return-value]


def draw_background(draw: ImageDraw.ImageDraw, rng: np.random.Generator, kind: str, w: int, h: int,
                    horizon: float | None = None) -> None:  # fmt: skip
    """Fill the image with a plausible place: a wall or facade, a ground plane and some clutter."""
    horizon_y = int(h * (horizon if horizon is not None else rng.uniform(0.55, 0.8)))
    if kind == "park":
        draw.rectangle((0, 0, w, horizon_y), fill=_muted(rng, 150, 220, 0.1))
        ground: RGB = (int(rng.uniform(60, 110)), int(rng.uniform(110, 150)), int(rng.uniform(50, 90)))
    else:
        draw.rectangle((0, 0, w, horizon_y), fill=_muted(rng))
        ground = _muted(rng, 70, 170, 0.1)
    draw.rectangle((0, horizon_y, w, h), fill=ground)
    for _ in range(int(rng.integers(2, 8))):  # windows, doors, signs, bushes, poles
        x0, y0 = rng.uniform(-0.1, 1.0) * w, rng.uniform(-0.1, 0.9) * horizon_y
        bw, bh = rng.uniform(0.1, 0.5) * w, rng.uniform(0.05, 0.3) * h
        if kind == "park" and rng.random() < 0.6:
            leaves = (int(rng.uniform(30, 80)), int(rng.uniform(90, 140)), int(rng.uniform(30, 70)))
            draw.ellipse((x0, y0 + 0.3 * bh, x0 + bw, y0 + 1.3 * bh), fill=leaves)
        elif rng.random() < 0.25:
            x = rng.uniform(0, w)
            bottom = horizon_y + rng.uniform(0, 0.1) * h
            draw.line((x, 0, x, bottom), fill=_muted(rng, 30, 120), width=max(1, int(0.02 * w)))
        else:
            draw.rectangle((x0, y0, x0 + bw, y0 + bh), fill=_muted(rng, 40, 230, 0.35))
    if kind == "street":  # a kerb line
        kerb = _muted(rng, 150, 220, 0.05)
        draw.line((0, horizon_y + 0.06 * h, w, horizon_y + 0.05 * h), fill=kerb, width=max(1, h // 60))


Rect = tuple[float, float, float, float]


def draw_occluder(
    draw: ImageDraw.ImageDraw, rng: np.random.Generator, kind: str, w: int, h: int
) -> Rect | None:
    """Something between the camera and the person; returns its rectangle (for keypoint visibility)."""
    colour = _muted(rng, 40, 200, 0.4)
    if kind == "pole":
        x = rng.uniform(0.2, 0.8) * w
        half = rng.uniform(0.05, 0.09) * w
        rect = (x - half, 0.0, x + half, float(h))
    elif kind == "low":  # a bench, a car bonnet, a railing in front of the legs
        rect = (0.0, rng.uniform(0.72, 0.85) * h, float(w), float(h))
    elif kind == "side":
        width = rng.uniform(0.18, 0.3) * w
        left = rng.random() < 0.5
        rect = (0.0 if left else w - width, rng.uniform(0.3, 0.6) * h, width if left else float(w), float(h))
    else:
        return None
    draw.rectangle(rect, fill=colour)
    return rect


def apply_camera(
    image: Image.Image,
    rng: np.random.Generator,
    brightness: float,
    tint: float,
    gradient: float,
    blur: float,
    noise: float,
) -> Image.Image:
    """Lighting, colour cast, blur and noise of a cheap surveillance or phone camera."""
    if blur > 0.05:
        image = image.filter(ImageFilter.GaussianBlur(blur * image.height / 128))
    arr = np.asarray(image, dtype=np.float32)
    h, w = arr.shape[:2]
    gain = [brightness * (1 + tint), brightness, brightness * (1 - tint)]
    factor = np.array(gain, dtype=np.float32).reshape(1, 1, 3)
    if gradient > 0:
        horizontal = rng.random() < 0.5
        ramp = np.linspace(1 - gradient, 1 + gradient, w if horizontal else h, dtype=np.float32)
        ramp = ramp[::-1] if rng.random() < 0.5 else ramp
        factor = factor * ramp.reshape((1, w, 1) if horizontal else (h, 1, 1))
    arr *= factor  # one pass over the pixels for gain, tint and gradient together
    if noise > 0:
        arr += rng.standard_normal(arr.shape, dtype=np.float32) * np.float32(noise)
    np.clip(arr, 0, 255, out=arr)
    return Image.fromarray(arr.astype(np.uint8), "RGB")


def render_crop(
    person: Identity, view: View, height: int, width: int, rng: np.random.Generator
) -> tuple[Image.Image, PersonGeometry]:
    """One person crop of `height` x `width` pixels; `rng` supplies the background and camera details."""
    image = Image.new("RGB", (width, height))
    draw = ImageDraw.Draw(image)
    draw_background(draw, rng, view.background, width, height)
    feet_y = height * (1 - view.foot_margin)
    body = height * view.person_frac
    if person.carried == "umbrella":  # leave room above the head for the open canopy
        body = min(body, feet_y / 1.16)
    cx = width * (0.5 + view.x_shift)
    draw.ellipse((cx - 0.18 * body, feet_y - 0.02 * body, cx + 0.18 * body, feet_y + 0.02 * body),
                 fill=(40, 40, 40))  # a contact shadow  # fmt: skip
    geometry = draw_person(draw, person, view.pose, cx, feet_y, body, (width, height))
    rect = draw_occluder(draw, rng, view.occluder, width, height)
    if rect is not None:
        geometry = PersonGeometry(geometry.box, hide_keypoints(geometry.keypoints, rect))
    image = apply_camera(image, rng, view.brightness, view.tint, view.gradient, view.blur, view.noise)
    return image, geometry


def hide_keypoints(keypoints: np.ndarray, rect: Rect) -> np.ndarray:
    """Mark visible keypoints inside an occluding rectangle as hidden (visibility 2 -> 1)."""
    kp = keypoints.copy()
    x0, y0, x1, y1 = rect
    inside = (kp[:, 0] >= x0) & (kp[:, 0] <= x1) & (kp[:, 1] >= y0) & (kp[:, 1] <= y1) & (kp[:, 2] == 2)
    kp[inside, 2] = 1
    return kp


def sample_crop_size(
    rng: np.random.Generator, height_range: tuple[int, int], aspect_range: tuple[float, float]
) -> tuple[int, int]:
    """Tall crops of varying size (real benchmark crops come from many cameras)."""
    height = int(rng.integers(height_range[0], height_range[1] + 1))
    width = max(16, round(height * rng.uniform(*aspect_range)))
    return height, width


def encode_image(image: Image.Image, fmt: str, quality: int = 90) -> bytes:
    """Encode deterministically (no timestamps or random metadata in any of these encoders)."""
    buffer = io.BytesIO()
    if fmt == "JPEG":
        image.save(buffer, "JPEG", quality=quality)
    elif fmt == "PNG":
        image.save(buffer, "PNG", compress_level=3)
    else:
        image.save(buffer, fmt)
    return buffer.getvalue()
