"""Whole web photos with synthetic people in them, and the ground truth a pipeline should find.

A scene is a street/park/wall/indoor background with people standing in separate slots (so boxes
never overlap), near ones large and far ones small. For each person the exact box (clipped to the
image) and COCO keypoints are known, and a `Verdict` says what a correct detector + pose filter
does with it under `WebPolicy`. People meant to be cropped are re-posed until they pass every rule
with a margin, and people meant to be rejected miss a rule by a wide margin, so a detector whose
boxes differ by a few pixels still agrees with the ground truth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from gadms.synth.attributes import Identity
from gadms.synth.config import WebPolicy
from gadms.synth.crops import BACKGROUNDS, apply_camera, draw_background, sample_pose
from gadms.synth.person import HEAD_KEYPOINTS, HIP_KEYPOINTS, PersonGeometry, Pose, draw_person
from gadms.synth.web_outcomes import Verdict

SCENE_SIZES = ((960, 640), (1024, 768), (800, 600), (720, 960))
SCENE_KINDS = ("people", "empty", "small_only", "lying", "head_cropped")
MARGIN_PX = 15  # croppable boxes exceed the minimum short side by this much
MARGIN_ASPECT = 0.03  # ... and stay this far inside the aspect range
SMALL_HEIGHTS = (50, 150)  # people this tall are at most ~70 px wide: far below any sane minimum
EDGE_MARGIN = 12  # whole people keep this far from the image edges (format variants may touch the edges)


Box = tuple[int, int, int, int]  # x0, y0, x1, y1 in pixels, end-exclusive


@dataclass(frozen=True)
class ScenePerson:
    pid: int
    box: Box  # clipped to the image
    keypoints: np.ndarray  # [17, 3]: x, y, visibility (2 visible, 1 hidden, 0 outside)
    verdict: Verdict

    def to_dict(self) -> dict[str, object]:
        return {
            "pid": self.pid,
            "box": [int(v) for v in self.box],
            "verdict": str(self.verdict),
            "keypoints": [round(float(v), 1) for v in self.keypoints.reshape(-1)],
        }


def clip_box(box: Box, size: tuple[int, int]) -> Box:
    w, h = size
    return (max(0, box[0]), max(0, box[1]), min(w, box[2]), min(h, box[3]))


def person_verdict(box: Box, keypoints: np.ndarray, policy: WebPolicy) -> Verdict:
    """What a correct detector + pose check does with this person (the rules of METHOD.md section 5)."""
    width, height = box[2] - box[0], box[3] - box[1]
    if min(width, height) < policy.person_min_short_side:
        return Verdict.TOO_SMALL
    if not policy.person_aspect[0] <= width / max(height, 1) <= policy.person_aspect[1]:
        return Verdict.BAD_ASPECT
    visible = keypoints[:, 2] == 2
    if (
        visible.sum() < policy.pose_min_keypoints
        or visible[list(HIP_KEYPOINTS)].sum() < policy.pose_min_hips
        or visible[list(HEAD_KEYPOINTS)].sum() < policy.pose_min_head
    ):
        return Verdict.POSE
    return Verdict.CROP


def _clearly(verdict: Verdict, box: Box, keypoints: np.ndarray, policy: WebPolicy) -> bool:
    """True when `verdict` holds with margins that a real detector's jitter cannot cross."""
    width, height = box[2] - box[0], box[3] - box[1]
    aspect = width / max(height, 1)
    low, high = policy.person_aspect
    box_ok = (min(width, height) >= policy.person_min_short_side + MARGIN_PX
              and low + MARGIN_ASPECT <= aspect <= high - MARGIN_ASPECT)  # fmt: skip
    visible = keypoints[:, 2] == 2
    if verdict == Verdict.CROP:
        return (box_ok and visible.sum() >= policy.pose_min_keypoints + 2
                and visible[list(HIP_KEYPOINTS)].sum() >= max(policy.pose_min_hips, 1)
                and visible[list(HEAD_KEYPOINTS)].sum() >= policy.pose_min_head)  # fmt: skip
    if verdict == Verdict.TOO_SMALL:
        return min(width, height) <= policy.person_min_short_side - 20
    if verdict == Verdict.BAD_ASPECT:
        return min(width, height) >= policy.person_min_short_side + MARGIN_PX and aspect >= high + 0.3
    if verdict == Verdict.POSE:
        return box_ok and visible[list(HEAD_KEYPOINTS)].sum() == 0
    return False


def _dry_geometry(
    person: Identity, pose: Pose, cx: float, feet_y: float, height: float, size: tuple[int, int]
) -> PersonGeometry:
    """The box and keypoints a drawing would have, without drawing (onto a 1x1 image)."""
    return draw_person(ImageDraw.Draw(Image.new("RGB", (1, 1))), person, pose, cx, feet_y, height, size)


def _place(
    rng: np.random.Generator,
    person: Identity,
    want: Verdict,
    slot: tuple[float, float],
    size: tuple[int, int],
    policy: WebPolicy,
) -> tuple[Pose, float, float, float]:
    """Pose, centre x, feet y and height for a person in a horizontal slot that clearly gets `want`."""
    w, h = size
    for _ in range(200):
        pose = sample_pose(rng)
        head_cut = want == Verdict.POSE
        if want == Verdict.TOO_SMALL:
            height = float(rng.uniform(*SMALL_HEIGHTS))
            feet_y = float(rng.uniform(0.55, 0.8)) * h
        else:
            height = float(rng.uniform(0.52, 0.85)) * h
            feet_y = h * (float(rng.uniform(0.9, 0.98)) if not head_cut else float(rng.uniform(0.97, 1.0)))
            if head_cut:  # push the person up until the head is above the image's top edge
                height = feet_y / float(rng.uniform(0.8, 0.86))
            elif feet_y - height < 0.03 * h:
                continue
        width = slot[1] - slot[0]
        cx = float(rng.uniform(slot[0] + 0.35 * width, slot[1] - 0.35 * width))
        geometry = _dry_geometry(person, pose, cx, feet_y, height, size)
        box = clip_box(geometry.box, size)
        x0, y0, x1, y1 = geometry.box
        inside = x0 >= max(slot[0], EDGE_MARGIN) and x1 <= min(slot[1], w - EDGE_MARGIN)
        inside = inside and (head_cut or (y0 >= EDGE_MARGIN and y1 <= h - EDGE_MARGIN))
        if inside and _clearly(want, box, geometry.keypoints, policy):
            return pose, cx, feet_y, height
    raise RuntimeError(f"could not place a person with verdict {want} in slot {slot} of {size}")


def render_scene(
    rng: np.random.Generator, people: list[Identity], kind: str, policy: WebPolicy
) -> tuple[Image.Image, list[ScenePerson]]:
    """A web photo of `kind` (see SCENE_KINDS) using `people` in order; returns it with the ground truth."""
    if kind not in SCENE_KINDS:
        raise ValueError(f"unknown scene kind {kind!r}")
    size = SCENE_SIZES[int(rng.integers(len(SCENE_SIZES)))]
    w, h = size
    image = Image.new("RGB", size)
    draw = ImageDraw.Draw(image)
    background = BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
    draw_background(draw, rng, background, w, h, horizon=float(rng.uniform(0.4, 0.6)))
    if kind == "people":
        max_large = max(1, int(w // (0.5 * 0.85 * h)))  # a large person needs about half its height of width
        n_large = int(rng.integers(1, min(2, max_large) + 1))
        wants = [Verdict.CROP] * n_large + [Verdict.TOO_SMALL] * int(rng.integers(0, 3))
    elif kind == "small_only":
        wants = [Verdict.TOO_SMALL] * int(rng.integers(2, 5))
    elif kind == "head_cropped":
        wants = [Verdict.POSE]
    else:
        wants = []
    order = list(rng.permutation(len(wants)))
    wants = [wants[i] for i in order]
    truth: list[ScenePerson] = []
    placements = []
    # slot widths: a large person needs about 2.5 times the room of a small one
    weights = np.array([1.0 if want == Verdict.TOO_SMALL else 2.5 for want in wants])
    edges = np.concatenate([[0.0], np.cumsum(weights) / max(weights.sum(), 1.0) * w])
    for index, want in enumerate(wants):
        slot = (float(edges[index]), float(edges[index + 1]))
        pose, cx, feet_y, height = _place(rng, people[index], want, slot, size, policy)
        placements.append((feet_y, index, pose, cx, height))
    for feet_y, index, pose, cx, height in sorted(placements, key=lambda p: p[0]):  # far people first
        geometry = draw_person(draw, people[index], pose, cx, feet_y, height, size)
        box = clip_box(geometry.box, size)
        verdict = person_verdict(box, geometry.keypoints, policy)
        truth.append(ScenePerson(people[index].pid, box, geometry.keypoints, verdict))
    if kind == "lying":
        truth.append(_draw_lying(rng, image, people[0], policy))
    image = apply_camera(image, rng, float(rng.uniform(0.8, 1.15)), float(rng.uniform(-0.06, 0.06)),
                         float(rng.uniform(0, 0.2)), 0.0, float(rng.choice([0.0, 2.0])))  # fmt: skip
    truth.sort(key=lambda p: (p.box[0], p.box[1]))
    return image, truth


def _draw_lying(
    rng: np.random.Generator, image: Image.Image, person: Identity, policy: WebPolicy
) -> ScenePerson:
    """A person lying on the ground: drawn upright on a transparent layer, turned 90 degrees, pasted."""
    w, h = image.size
    for _ in range(100):
        length = float(rng.uniform(0.45, 0.7)) * w
        layer_h = int(length * 1.05)
        layer_w = int(length * 0.6)
        layer = Image.new("RGBA", (layer_w, layer_h), (0, 0, 0, 0))
        pose = Pose(facing="front", stride=0.0, arm_spread=float(rng.uniform(0.05, 0.2)))
        pen = ImageDraw.Draw(layer)
        geometry = draw_person(pen, person, pose, layer_w / 2, layer_h - 2, length, layer.size)
        turned = layer.transpose(Image.Transpose.ROTATE_90)  # (x, y) -> (y, layer_w - 1 - x)
        x0, y0 = int(rng.uniform(0, w - turned.width)), int(rng.uniform(0.55, 0.95) * h - turned.height / 2)
        bx0, by0, bx1, by1 = geometry.box
        box = clip_box((x0 + by0, y0 + layer_w - bx1, x0 + by1, y0 + layer_w - bx0), (w, h))
        kp = geometry.keypoints.copy()
        kp[:, 0], kp[:, 1] = x0 + geometry.keypoints[:, 1], y0 + layer_w - 1 - geometry.keypoints[:, 0]
        if y0 >= 0 and y0 + turned.height <= h and _clearly(Verdict.BAD_ASPECT, box, kp, policy):
            image.paste(turned, (x0, y0), turned)
            return ScenePerson(person.pid, box, kp, person_verdict(box, kp, policy))
    raise RuntimeError("could not place a lying person")
