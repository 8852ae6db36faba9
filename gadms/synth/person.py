"""Drawing one person with PIL primitives: a posed skeleton, clothes over it, COCO keypoints out.

The person is drawn straight onto any image (a tall crop or a wide scene) at a given position and
height, so crops and web scenes share one renderer. Coordinates are pixels; `Pose` says how the
body is turned and moving. The drawn extent is tracked so the caller gets the exact person box
(body, clothes, bags and held objects; not the open umbrella canopy, which detectors do not count
as the person), and the 17 COCO keypoints with a visibility flag (2 visible, 1 hidden by the body
itself, 0 outside the image) that occluders and image borders can lower later.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import ImageDraw

from gadms.synth.attributes import RGB, Identity

FACINGS = ("front", "back", "left", "right")  # left/right: walking towards the image's left/right
COCO_KEYPOINTS = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
)  # fmt: skip
HEAD_KEYPOINTS = range(0, 5)
HIP_KEYPOINTS = (11, 12)
BUILD_WIDTH = {"slim": 0.86, "average": 1.0, "heavy": 1.22}

Point = tuple[float, float]


@dataclass(frozen=True)
class Pose:
    """How the body is turned and moving in one photo."""

    facing: str
    stride: float = 0.0  # leg/arm swing amplitude in radians; 0 is standing still
    phase: float = 0.0  # position in the walk cycle, -1..1
    arm_spread: float = 0.1  # arms away from the body (front/back views), radians


@dataclass(frozen=True)
class PersonGeometry:
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 of the drawn person, inclusive-exclusive
    keypoints: np.ndarray  # [17, 3] float32: x, y, visibility (COCO order)


def _shade(rgb: RGB, factor: float) -> RGB:
    return tuple(max(0, min(255, int(c * factor))) for c in rgb)  # type: ignore[return-value]


class TrackingDraw:
    """ImageDraw with the bounding box of everything drawn while `track` is on."""

    def __init__(self, draw: ImageDraw.ImageDraw) -> None:
        self.draw = draw
        self.track = True
        self.x0 = self.y0 = math.inf
        self.x1 = self.y1 = -math.inf

    def _extend(self, x0: float, y0: float, x1: float, y1: float) -> None:
        if self.track:
            self.x0, self.y0 = min(self.x0, x0), min(self.y0, y0)
            self.x1, self.y1 = max(self.x1, x1), max(self.y1, y1)

    def polygon(self, points: list[Point], fill: RGB) -> None:
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        self._extend(min(xs), min(ys), max(xs), max(ys))
        self.draw.polygon(points, fill=fill)

    def ellipse(self, cx: float, cy: float, rx: float, ry: float, fill: RGB) -> None:
        rx, ry = max(rx, 0.5), max(ry, 0.5)
        self._extend(cx - rx, cy - ry, cx + rx, cy + ry)
        self.draw.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=fill)

    def limb(self, p0: Point, p1: Point, width: float, fill: RGB) -> None:
        """A thick segment with round ends (an arm, a leg, a strap)."""
        w = max(1, round(width))
        self.draw.line((p0, p1), fill=fill, width=w)
        self.ellipse(*p0, width / 2, width / 2, fill)
        self.ellipse(*p1, width / 2, width / 2, fill)

    def rect(self, x0: float, y0: float, x1: float, y1: float, fill: RGB) -> None:
        self._extend(x0, y0, x1, y1)
        self.draw.rectangle((x0, y0, x1, y1), fill=fill)

    def box(self) -> tuple[int, int, int, int]:
        return (math.floor(self.x0), math.floor(self.y0), math.ceil(self.x1) + 1, math.ceil(self.y1) + 1)


def _along(p: Point, angle: float, length: float, direction: float = 1.0) -> Point:
    """The point `length` away from `p` at `angle` from straight down, swung towards `direction`."""
    return (p[0] + direction * length * math.sin(angle), p[1] + length * math.cos(angle))


class Skeleton:
    """Joint positions for one person, pose and body size (all in pixels)."""

    def __init__(self, person: Identity, pose: Pose, cx: float, feet_y: float, height: float) -> None:
        u = height
        self.u = u
        self.pose = pose
        self.side = pose.facing in ("left", "right")
        self.dir = -1.0 if pose.facing == "left" else 1.0  # where a side-on person looks
        b = BUILD_WIDTH[person.build]
        man = person.gender == "man"
        top = feet_y - u
        self.head = (cx + (0.012 * u * self.dir if self.side else 0.0), top + 0.066 * u)
        self.head_rx, self.head_ry = 0.047 * u, 0.064 * u
        self.neck = (cx, top + 0.135 * u)
        self.shoulder_y, self.hip_y = top + 0.185 * u, top + 0.5 * u
        self.arm_w = 0.05 * u * math.sqrt(b)
        self.leg_w = 0.066 * u * b**0.7
        swing = pose.stride * pose.phase
        if self.side:
            self.torso_half = 0.062 * u * b
            self.hip_half = 0.066 * u * b
            shoulder = (cx, self.shoulder_y)
            hip = (cx, self.hip_y)
            # near side first; the far limbs swing the opposite way
            self.shoulders = (shoulder, shoulder)
            self.hips = (hip, hip)
            arm_angles = (-swing * 0.9, swing * 0.9)
            leg_angles = (swing, -swing)
            elbows = tuple(_along(shoulder, a, 0.165 * u, self.dir) for a in arm_angles)
            self.elbows = elbows
            self.wrists = tuple(_along(e, a + 0.25, 0.155 * u, self.dir) for e, a in zip(elbows, arm_angles))
            knees = tuple(_along(hip, a, 0.225 * u, self.dir) for a in leg_angles)
            self.knees = knees
            # the leg behind bends at the knee, the leg in front stays nearly straight
            shin_angles = [a - (0.35 * abs(a) if a < 0 else 0.0) for a in leg_angles]
            self.ankles = tuple(_along(k, a, 0.215 * u, self.dir) for k, a in zip(knees, shin_angles))
        else:
            self.torso_half = (0.105 if man else 0.093) * u * b
            self.hip_half = (0.078 if man else 0.088) * u * b
            # index 0 is the person's RIGHT side, which is the image's left when they face us
            sides = (-1.0, 1.0) if pose.facing == "front" else (1.0, -1.0)
            shoulder_x = self.torso_half - 0.3 * self.arm_w
            self.shoulders = tuple((cx + s * shoulder_x, self.shoulder_y) for s in sides)
            self.hips = tuple((cx + s * 0.045 * u * b, self.hip_y) for s in sides)
            lift = 0.35 * abs(swing)  # arm swinging to/from the camera looks shorter
            self.elbows = tuple(_along(p, pose.arm_spread, 0.165 * u * (1 - 0.25 * lift), s)
                                for p, s in zip(self.shoulders, sides))  # fmt: skip
            self.wrists = tuple(_along(e, pose.arm_spread * 0.6, 0.155 * u * (1 - 0.4 * lift), s)
                                for e, s in zip(self.elbows, sides))  # fmt: skip
            self.knees = tuple(_along(h, 0.03, 0.225 * u, s) for h, s in zip(self.hips, sides))
            raise_foot = (max(swing, 0.0) * 0.12 * u, max(-swing, 0.0) * 0.12 * u)  # the stepping foot lifts
            self.ankles = tuple((k[0] + s * 0.005 * u, k[1] + 0.215 * u - r)
                                for k, s, r in zip(self.knees, sides, raise_foot))  # fmt: skip
        self.top = top
        self.feet_y = feet_y


def _trapezoid(cx: float, y0: float, half0: float, y1: float, half1: float) -> list[Point]:
    """A horizontal trapezoid centred on x = cx: half-width half0 at y0, half1 at y1."""
    return [(cx - half0, y0), (cx + half0, y0), (cx + half1, y1), (cx - half1, y1)]


def _bend_arm_to(sk: Skeleton, index: int, hand: Point) -> None:
    """Move one wrist to `hand`, placing the elbow between (arms holding an umbrella, a phone)."""
    shoulder = sk.shoulders[index]
    elbow = ((shoulder[0] + hand[0]) / 2 + 0.05 * sk.u * sk.dir * (1 if sk.side else 0),
             max(shoulder[1], hand[1]) + 0.08 * sk.u)  # fmt: skip
    sk.elbows = tuple(elbow if i == index else e for i, e in enumerate(sk.elbows))
    sk.wrists = tuple(hand if i == index else w for i, w in enumerate(sk.wrists))


def draw_person(
    draw: ImageDraw.ImageDraw,
    person: Identity,
    pose: Pose,
    cx: float,
    feet_y: float,
    height: float,
    image_size: tuple[int, int],
) -> PersonGeometry:
    """Draw `person` with feet at (cx, feet_y), `height` pixels tall; return its box and keypoints."""
    sk = Skeleton(person, pose, cx, feet_y, height)
    pen = TrackingDraw(draw)
    u = sk.u
    hx, hy = sk.head
    back = pose.facing == "back"
    # Held objects decide the right arm's (index 0) pose before anything is drawn.
    if person.carried == "umbrella":  # hand in front of the chest
        hand_dx = 0.06 * u * sk.dir if sk.side else -0.04 * u
        _bend_arm_to(sk, 0, (sk.neck[0] + hand_dx, sk.shoulder_y + 0.1 * u))
    elif person.carried == "phone":  # hand at the ear
        hand_dx = 0.02 * u * sk.dir if sk.side else -sk.head_rx * 0.9
        _bend_arm_to(sk, 0, (hx + hand_dx, hy + 0.02 * u))
    long_hair = person.hair_length in ("long", "shoulder-length")
    hair_end = sk.top + (0.34 if person.hair_length == "long" else 0.2) * u

    # 1. Things behind the body.
    if long_hair and not back:
        w = sk.head_rx * (1.25 if not sk.side else 1.0)
        off = -0.03 * u * sk.dir if sk.side else 0.0
        pen.polygon([(hx + off - w, hy), (hx + off + w, hy), (hx + off + w * 1.1, hair_end),
                     (hx + off - w * 1.1, hair_end)], person.hair_rgb)  # fmt: skip
    if person.bag == "backpack" and sk.side:
        bx = sk.neck[0] - sk.dir * (sk.torso_half + 0.05 * u)
        y0, y1 = sk.shoulder_y + 0.01 * u, sk.shoulder_y + 0.2 * u
        pen.rect(bx - 0.055 * u, y0, bx + 0.055 * u, y1, person.bag_rgb)
    if sk.side:  # far leg and far arm, a little darker
        _draw_leg(pen, sk, person, 1, 0.8)
        _draw_arm(pen, sk, person, 1, 0.8)

    # 2. Legs, shoes, skirt.
    for i in ((0,) if sk.side else (0, 1)):
        _draw_leg(pen, sk, person, i, 1.0)
    if person.bottom_type in ("skirt", "long skirt"):
        hem = sk.hip_y + (0.26 if person.bottom_type == "skirt" else 0.42) * u
        flare = 1.25 if person.bottom_type == "skirt" else 1.45
        waist = sk.hip_y - 0.03 * u
        waist_half, hem_half = sk.hip_half * 1.05, sk.hip_half * flare
        pen.polygon(_trapezoid(cx, waist, waist_half, hem, hem_half), person.bottom_rgb)

    # 3. Torso.
    _draw_torso(pen, sk, person)

    # 4. Near arm(s), neck, head, hair, headwear.
    for i in ((0,) if sk.side else (0, 1)):
        _draw_arm(pen, sk, person, i, 1.0)
    neck_half = 0.022 * u
    pen.rect(cx - neck_half, hy + sk.head_ry * 0.6, cx + neck_half, sk.shoulder_y, person.skin)
    _draw_head(pen, sk, person, long_hair, hair_end)

    # 5. Bags and held things in front.
    _draw_bag(pen, sk, person)
    _draw_carried(pen, sk, person)
    return PersonGeometry(box=pen.box(), keypoints=_keypoints(sk, image_size))


def _draw_leg(pen: TrackingDraw, sk: Skeleton, person: Identity, i: int, light: float) -> None:
    u = sk.u
    covered = person.bottom_type == "trousers" or person.bottom_type == "long skirt"
    trouser = _shade(person.bottom_rgb, light)
    skin = _shade(person.skin, light)
    hip, knee, ankle = sk.hips[i], sk.knees[i], sk.ankles[i]
    thigh_colour = trouser if person.bottom_type in ("trousers", "shorts") else skin
    if person.bottom_type == "shorts":  # shorts end a third of the way down the thigh-to-knee line
        mid = (hip[0] + (knee[0] - hip[0]) * 0.7, hip[1] + (knee[1] - hip[1]) * 0.7)
        pen.limb(hip, mid, sk.leg_w * 1.1, trouser)
        pen.limb(mid, knee, sk.leg_w * 0.85, skin)
    else:
        pen.limb(hip, knee, sk.leg_w, thigh_colour)
    pen.limb(knee, ankle, sk.leg_w * 0.85, trouser if covered else skin)
    fx = sk.dir * 0.03 * u if sk.side else 0.0
    pen.ellipse(ankle[0] + fx, ankle[1] + 0.02 * u, 0.045 * u if sk.side else 0.035 * u, 0.028 * u,
                _shade(person.shoe_rgb, light))  # fmt: skip


def _draw_arm(pen: TrackingDraw, sk: Skeleton, person: Identity, i: int, light: float) -> None:
    shoulder, elbow, wrist = sk.shoulders[i], sk.elbows[i], sk.wrists[i]
    sleeve = _shade(person.top_rgb, light)
    skin = _shade(person.skin, light)
    if person.top_type == "tank top":
        upper = lower = skin
    elif person.top_type == "t-shirt":
        mid = ((shoulder[0] + elbow[0]) / 2, (shoulder[1] + elbow[1]) / 2)
        pen.limb(shoulder, mid, sk.arm_w * 1.15, sleeve)
        upper, lower = skin, skin
        shoulder = mid
    else:
        upper = lower = sleeve
    pen.limb(shoulder, elbow, sk.arm_w, upper)
    pen.limb(elbow, wrist, sk.arm_w * 0.88, lower)
    pen.ellipse(*wrist, sk.arm_w * 0.55, sk.arm_w * 0.6, skin)


def _draw_torso(pen: TrackingDraw, sk: Skeleton, person: Identity) -> None:
    u, cx = sk.u, sk.neck[0]
    colour = person.top_rgb
    bottom = sk.hip_y + (0.17 * u if person.top_type == "coat" else 0.015 * u)
    shoulder_half = sk.torso_half * (0.8 if person.top_type == "tank top" else 1.0)
    hem_half = sk.hip_half * (1.18 if person.top_type == "coat" else 1.0)
    lean = 0.015 * u * sk.dir if sk.side else 0.0
    neckline = sk.shoulder_y - 0.02 * u
    corners = [(cx - shoulder_half + lean, neckline), (cx + shoulder_half + lean, neckline),
               (cx + hem_half, bottom), (cx - hem_half, bottom)]  # fmt: skip
    pen.polygon(corners, colour)
    dark = _shade(colour, 0.6) if sum(colour) > 120 else _shade(colour, 3.0)
    if person.top_type in ("jacket", "coat") and sk.pose.facing == "front":  # the closing line
        pen.limb((cx, sk.shoulder_y + 0.01 * u), (cx, bottom - 0.01 * u), max(1.0, 0.012 * u), dark)
    if person.top_type == "hoodie":
        if sk.pose.facing == "back":
            pen.ellipse(cx, sk.shoulder_y + 0.015 * u, sk.torso_half * 0.6, 0.05 * u, _shade(colour, 0.85))
        elif sk.pose.facing == "front":
            pen.ellipse(cx, sk.hip_y - 0.07 * u, sk.torso_half * 0.55, 0.035 * u, _shade(colour, 0.8))
    if person.top_type in ("t-shirt", "tank top") and sk.pose.facing == "front":  # a neckline
        pen.ellipse(cx, sk.shoulder_y - 0.015 * u, 0.03 * u, 0.02 * u, person.skin)


def _draw_head(pen: TrackingDraw, sk: Skeleton, person: Identity, long_hair: bool, hair_end: float) -> None:
    hx, hy = sk.head
    rx, ry = sk.head_rx, sk.head_ry
    facing = sk.pose.facing
    hair = person.hair_rgb
    bald = person.hair_length == "bald"
    if facing == "back" and not bald:
        pen.ellipse(hx, hy, rx, ry, hair)
        if long_hair:
            top_half, end_half = rx * 1.05, rx * 1.1
            pen.polygon(_trapezoid(hx, hy, top_half, hair_end, end_half), hair)
    else:
        pen.ellipse(hx, hy, rx, ry, person.skin)
        if sk.side:  # a nose on the side the person looks to
            pen.ellipse(hx + sk.dir * rx * 0.95, hy + 0.1 * ry, rx * 0.22, ry * 0.16, person.skin)
        if not bald:
            back_off = -sk.dir * rx * 0.35 if sk.side else 0.0
            pen.ellipse(hx + back_off, hy - ry * 0.45, rx * 1.05, ry * 0.62, hair)  # the top of the head
            if person.hair_length != "short":
                side_end = hy + (ry * 0.9 if person.hair_length == "shoulder-length" else ry * 1.2)
                for s in ((-sk.dir,) if sk.side else (-1.0, 1.0)):
                    x = hx + s * rx * 0.7
                    pen.rect(x - rx * 0.3, hy - ry * 0.4, x + rx * 0.3, side_end, hair)
        if facing == "front" and rx >= 4:  # eyes once the head is big enough to show them
            eye_rx, eye_ry = max(0.6, rx * 0.11), max(0.6, ry * 0.08)
            for s in (-1.0, 1.0):
                pen.ellipse(hx + s * rx * 0.38, hy + ry * 0.08, eye_rx, eye_ry, (30, 24, 22))
    colour = person.headwear_rgb
    if person.headwear == "cap":
        pen.ellipse(hx, hy - ry * 0.5, rx * 1.06, ry * 0.56, colour)
        brim_x = hx + (sk.dir * rx * 0.9 if sk.side else 0.0)
        if facing != "back":
            brim_rx = rx * (0.75 if sk.side else 1.1)
            pen.ellipse(brim_x, hy - ry * 0.25, brim_rx, ry * 0.14, _shade(colour, 0.85))
    elif person.headwear == "hat":
        pen.rect(hx - rx * 0.85, hy - ry * 1.25, hx + rx * 0.85, hy - ry * 0.45, colour)
        pen.ellipse(hx, hy - ry * 0.45, rx * 1.75, ry * 0.18, _shade(colour, 0.85))
    elif person.headwear == "beanie":
        pen.ellipse(hx, hy - ry * 0.55, rx * 1.04, ry * 0.62, colour)
        pen.rect(hx - rx * 1.04, hy - ry * 0.5, hx + rx * 1.04, hy - ry * 0.28, _shade(colour, 0.8))


def _draw_bag(pen: TrackingDraw, sk: Skeleton, person: Identity) -> None:
    if person.bag == "none":
        return
    u, cx = sk.u, sk.neck[0]
    colour = person.bag_rgb
    strap = max(1.0, 0.018 * u)
    facing = sk.pose.facing
    top = sk.shoulder_y
    if person.bag == "backpack":
        if facing == "back":  # the pack itself
            half = sk.torso_half * 0.75
            pen.rect(cx - half, top + 0.01 * u, cx + half, top + 0.22 * u, colour)
        elif facing == "front":  # only the straps show
            for s in (-1.0, 1.0):
                x = cx + s * sk.torso_half * 0.55
                pen.limb((x, top - 0.01 * u), (x + s * 0.01 * u, top + 0.16 * u), strap * 1.3, colour)
        else:  # one strap across the near shoulder
            pen.limb((cx, top), (cx - sk.dir * sk.torso_half, top + 0.16 * u), strap * 1.3, colour)
    elif person.bag == "shoulder bag":
        side = 1.0 if not sk.side else -sk.dir
        bag_x = cx + side * (sk.hip_half + 0.02 * u)
        strap_start = (cx - side * sk.torso_half * 0.7, top)
        pen.limb(strap_start, (bag_x, sk.hip_y - 0.02 * u), strap, _shade(colour, 0.8))
        pen.rect(bag_x - 0.045 * u, sk.hip_y - 0.04 * u, bag_x + 0.045 * u, sk.hip_y + 0.05 * u, colour)
    elif person.bag == "handbag":
        index = 1 if not sk.side else 0
        wx, wy = sk.wrists[index]
        pen.rect(wx - 0.04 * u, wy + 0.01 * u, wx + 0.04 * u, wy + 0.08 * u, colour)


def _draw_carried(pen: TrackingDraw, sk: Skeleton, person: Identity) -> None:
    u = sk.u
    wx, wy = sk.wrists[0]
    if person.carried == "umbrella":
        top = sk.top - 0.07 * u
        pen.limb((wx, wy), (wx, top), max(1.0, 0.012 * u), (40, 40, 40))
        pen.track = False  # an open canopy is not part of the person box
        canopy = (60, 60, 70) if person.top_colour != "black" else (170, 40, 60)
        canopy_box = (wx - 0.28 * u, top - 0.08 * u, wx + 0.28 * u, top + 0.1 * u)
        pen.draw.pieslice(canopy_box, 180, 360, fill=canopy)
        pen.track = True
    elif person.carried == "phone":
        pen.rect(wx - 0.014 * u, wy - 0.035 * u, wx + 0.014 * u, wy + 0.01 * u, (20, 20, 24))
    elif person.carried == "bottle":
        pen.rect(wx - 0.014 * u, wy - 0.01 * u, wx + 0.014 * u, wy + 0.075 * u, (150, 200, 230))
    elif person.carried == "book":
        pen.rect(wx - 0.035 * u, wy - 0.085 * u, wx + 0.01 * u, wy + 0.03 * u, (200, 170, 90))


def _limb_joints(sk: Skeleton) -> list[tuple[int, tuple[Point, ...]]]:
    """(index of the COCO left_* keypoint, the two joints) for shoulders, elbows, ... ankles."""
    return [(5, sk.shoulders), (7, sk.elbows), (9, sk.wrists), (11, sk.hips), (13, sk.knees), (15, sk.ankles)]


def _keypoints(sk: Skeleton, image_size: tuple[int, int]) -> np.ndarray:
    """COCO keypoints; visibility from the facing (self-occlusion) and the image bounds."""
    hx, hy = sk.head
    rx, ry = sk.head_rx, sk.head_ry
    facing = sk.pose.facing
    kp = np.zeros((17, 3), dtype=np.float32)
    if sk.side:
        d = sk.dir
        # left side of the body faces the camera when walking to the image's right... and vice versa
        near_left = facing == "left"
        nose = (hx + d * rx, hy + 0.1 * ry)
        eye = (hx + d * rx * 0.6, hy - 0.05 * ry)
        ear = (hx - d * rx * 0.1, hy)
        kp[0] = (*nose, 2)
        kp[1] = (*eye, 2 if not near_left else 1)
        kp[2] = (*eye, 2 if near_left else 1)
        kp[3] = (*ear, 2 if not near_left else 1)
        kp[4] = (*ear, 2 if near_left else 1)
        near, far = (0, 1)
        for name_index, joints in _limb_joints(sk):
            # COCO pairs are (left, right); the side facing the camera is the visible one
            left_index, right_index = (near, far) if near_left else (far, near)
            left_joint, right_joint = joints[left_index], joints[right_index]
            kp[name_index] = (*left_joint, 2 if not near_left else 1)
            kp[name_index + 1] = (*right_joint, 2 if near_left else 1)
            if name_index >= 9:  # far wrists and legs are usually visible between the near limbs
                kp[name_index][2] = kp[name_index + 1][2] = 2
    else:
        front = facing == "front"
        s = -1.0 if front else 1.0  # x sign of the person's right side in the image
        kp[0] = (hx, hy + 0.15 * ry, 2 if front else 1)
        kp[1] = (hx - s * rx * 0.38, hy + 0.08 * ry, 2 if front else 1)
        kp[2] = (hx + s * rx * 0.38, hy + 0.08 * ry, 2 if front else 1)
        kp[3] = (hx - s * rx, hy, 2)
        kp[4] = (hx + s * rx, hy, 2)
        for name_index, joints in _limb_joints(sk):
            kp[name_index] = (*joints[1], 2)  # joints[0] is the person's right
            kp[name_index + 1] = (*joints[0], 2)
    w, h = image_size
    outside = (kp[:, 0] < 0) | (kp[:, 0] >= w) | (kp[:, 1] < 0) | (kp[:, 1] >= h)
    kp[outside, 2] = 0
    return kp
