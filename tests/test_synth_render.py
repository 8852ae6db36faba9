"""Rendering: deterministic, true to the attributes, varied across views, with sane geometry."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from PIL import Image, ImageDraw
from synth_world import make_person

from gadms.synth.attributes import sample_identities
from gadms.synth.crops import encode_image, hide_keypoints, render_crop, sample_crop_size, sample_view
from gadms.synth.person import COCO_KEYPOINTS, Pose, draw_person


def render(person, seed: int, height: int = 256, width: int = 96) -> tuple[Image.Image, object]:
    rng = np.random.default_rng([seed, person.pid])
    return render_crop(person, sample_view(rng), height, width, rng)


def test_same_seed_same_bytes_other_seed_other_bytes() -> None:
    person = sample_identities(np.random.default_rng(0), 1)[0]
    first = encode_image(render(person, 1)[0], "PNG")
    assert encode_image(render(person, 1)[0], "PNG") == first
    assert encode_image(render(person, 2)[0], "PNG") != first


def test_drawn_colours_are_the_attribute_colours() -> None:
    """Without background or camera effects, torso, thighs and shoes have the person's exact colours."""
    person = make_person()  # red t-shirt, black trousers, white shoes, blue cap
    image = Image.new("RGB", (120, 320), (128, 128, 128))
    u, cx, feet = 300.0, 60.0, 310.0
    geometry = draw_person(ImageDraw.Draw(image), person, Pose("front"), cx, feet, u, image.size)
    top = feet - u
    pixel = image.getpixel
    assert pixel((int(cx + 0.04 * u), int(top + 0.35 * u))) == person.top_rgb
    left_hip_x = geometry.keypoints[COCO_KEYPOINTS.index("left_hip"), 0]
    assert pixel((int(left_hip_x), int(top + 0.6 * u))) == person.bottom_rgb
    ankle = geometry.keypoints[COCO_KEYPOINTS.index("left_ankle")]
    assert pixel((int(ankle[0]), int(ankle[1] + 0.02 * u))) == person.shoe_rgb
    assert pixel((int(cx), int(top + 0.02 * u))) == person.headwear_rgb  # the cap covers the top of the head
    assert pixel((5, 5)) == (128, 128, 128)


def test_box_and_keypoints_fit_the_drawing() -> None:
    for person in sample_identities(np.random.default_rng(1), 40):
        for facing in ("front", "back", "left", "right"):
            image = Image.new("RGB", (200, 400), (0, 0, 0))
            pose = Pose(facing, stride=0.3, phase=0.5)
            geometry = draw_person(ImageDraw.Draw(image), person, pose, 100, 390, 360, image.size)
            x0, y0, x1, y1 = geometry.box
            drawn = np.argwhere(np.asarray(image).sum(axis=2) > 0)
            if person.carried != "umbrella":  # the canopy is drawn but is not part of the person box
                assert (drawn[:, 0].min(), drawn[:, 1].min()) >= (y0, x0)
                assert (drawn[:, 0].max(), drawn[:, 1].max()) < (y1, x1)
            kp = geometry.keypoints
            assert kp.shape == (17, 3)
            assert np.all((kp[:, 0] >= x0 - 1) & (kp[:, 0] <= x1) & (kp[:, 1] >= y0 - 1) & (kp[:, 1] <= y1))
            head_y, hip_y, ankle_y = kp[0:5, 1].max(), kp[11:13, 1].mean(), kp[15:17, 1].mean()
            assert head_y < hip_y < ankle_y
            visible_head = int((kp[0:5, 2] == 2).sum())
            assert visible_head == {"front": 5, "back": 2, "left": 3, "right": 3}[facing]


def test_views_of_one_person_are_not_pixel_copies() -> None:
    person = sample_identities(np.random.default_rng(5), 1)[0]
    views = [np.asarray(render(person, seed, 192, 64)[0], dtype=np.float32) for seed in range(6)]
    for a, b in itertools.combinations(views, 2):
        assert np.abs(a - b).mean() > 8.0
    rng = np.random.default_rng(0)
    sampled = [sample_view(rng) for _ in range(200)]
    assert {v.pose.facing for v in sampled} == {"front", "back", "left", "right"}
    assert {v.occluder for v in sampled} == {"none", "pole", "low", "side"}
    brightness = [v.brightness for v in sampled]
    assert max(brightness) - min(brightness) > 0.4
    assert {v.background for v in sampled} == {"street", "wall", "park", "indoor"}


def test_identity_survives_across_views() -> None:
    """Colour histograms alone find another view of the same person far above chance (the identity is in
    the pixels), yet far from always (views differ): retrieval has to be learned, not looked up."""
    people = sample_identities(np.random.default_rng(0), 40)
    features, pids = [], []
    for person in people:
        for view in range(4):
            image = np.asarray(render(person, view, 128, 64)[0])[10:120, 16:48].reshape(-1, 3) // 64
            histogram = np.bincount(image[:, 0] * 16 + image[:, 1] * 4 + image[:, 2], minlength=64).astype(float)
            features.append(np.sqrt(histogram / histogram.sum()))
            pids.append(person.pid)
    similarity = np.asarray(features) @ np.asarray(features).T
    np.fill_diagonal(similarity, -1.0)
    pids_array = np.asarray(pids)
    rank1 = float((pids_array[similarity.argmax(axis=1)] == pids_array).mean())
    chance = 3 / (len(pids) - 1)
    assert 10 * chance < rank1 < 0.9, rank1


def test_crop_sizes_vary_and_are_tall() -> None:
    rng = np.random.default_rng(3)
    sizes = [sample_crop_size(rng, (128, 384), (0.3, 0.45)) for _ in range(300)]
    heights = {h for h, _ in sizes}
    assert min(heights) >= 128 and max(heights) <= 384 and len(heights) > 100
    assert all(0.29 <= w / h <= 0.46 for h, w in sizes)
    image, _ = render(sample_identities(rng, 1)[0], 0, 128, 64)
    assert image.size == (64, 128) and image.mode == "RGB"


def test_occluders_hide_keypoints() -> None:
    kp = np.array([[10, 10, 2], [50, 50, 2], [52, 80, 1], [90, 90, 0]] + [[0, 0, 2]] * 13, dtype=np.float32)
    hidden = hide_keypoints(kp, (40, 40, 60, 100))
    assert hidden[:4, 2].tolist() == [2, 1, 1, 0]
    assert kp[1, 2] == 2  # the input is not modified


@pytest.mark.parametrize("size", [(128, 64), (384, 128)])
def test_render_output_has_the_requested_size(size: tuple[int, int]) -> None:
    person = sample_identities(np.random.default_rng(9), 1)[0]
    image, geometry = render(person, 4, *size)
    assert image.size == (size[1], size[0])
    x0, y0, x1, y1 = geometry.box
    assert x1 - x0 > 0.15 * size[1] and y1 - y0 > 0.6 * size[0]  # the person fills the crop
