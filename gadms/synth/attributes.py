"""Who a synthetic person is: a fixed combination of attributes that captions can state.

An `Identity` holds 12 caption-visible attributes (gender, build, top type and colour, bottom
type and colour, shoe colour, hair length and colour, headwear, bag, carried object; headwear and
bag have a colour too) plus hidden traits that stay fixed across camera views (exact shades, skin
tone, height) so that two photos of one person look like the same person, not like two people
that share a description.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

RGB = tuple[int, int, int]

# Named colours and their base RGB. A person's exact shade is the base plus a small per-person
# jitter, small enough that the name stays true.
COLOURS: dict[str, RGB] = {
    "red": (200, 32, 38),
    "orange": (236, 122, 30),
    "yellow": (236, 206, 42),
    "green": (40, 140, 62),
    "blue": (36, 72, 182),
    "purple": (122, 50, 150),
    "pink": (236, 132, 172),
    "brown": (112, 72, 40),
    "black": (26, 26, 30),
    "white": (236, 236, 232),
    "gray": (128, 128, 130),
}
HAIR_COLOURS: dict[str, RGB] = {
    "black": (22, 20, 20),
    "brown": (92, 56, 30),
    "blonde": (222, 190, 112),
    "gray": (165, 165, 165),
    "red": (172, 72, 30),
}
SKIN_TONES: tuple[RGB, ...] = ((245, 212, 186), (226, 180, 146), (192, 140, 102), (140, 96, 66), (96, 64, 44))

GENDERS = ("man", "woman")
BUILDS = ("slim", "average", "heavy")
TOP_TYPES = ("t-shirt", "sweater", "jacket", "coat", "tank top", "hoodie")
BOTTOM_TYPES = ("trousers", "shorts", "skirt", "long skirt")
HAIR_LENGTHS = ("bald", "short", "shoulder-length", "long")
HEADWEAR = ("none", "cap", "hat", "beanie")
BAGS = ("none", "backpack", "shoulder bag", "handbag")
CARRIED = ("none", "umbrella", "phone", "bottle", "book")

SHOE_COLOURS = ("black", "white", "brown", "gray", "red", "blue")
BOTTOM_COLOURS = ("black", "blue", "gray", "white", "brown", "green", "red", "pink", "purple")

# Attribute name -> the values it can take; what the tests and the documentation enumerate.
ATTRIBUTE_VALUES: dict[str, tuple[str, ...]] = {
    "gender": GENDERS,
    "build": BUILDS,
    "top_type": TOP_TYPES,
    "top_colour": tuple(COLOURS),
    "bottom_type": BOTTOM_TYPES,
    "bottom_colour": BOTTOM_COLOURS,
    "shoe_colour": SHOE_COLOURS,
    "hair_length": HAIR_LENGTHS,
    "hair_colour": tuple(HAIR_COLOURS),
    "headwear": HEADWEAR,
    "headwear_colour": tuple(COLOURS),
    "bag": BAGS,
    "bag_colour": tuple(COLOURS),
    "carried": CARRIED,
}


@dataclass(frozen=True)
class Identity:
    """One synthetic person. `pid` is the identity number used by the dataset it belongs to."""

    pid: int
    gender: str
    build: str
    top_type: str
    top_colour: str
    bottom_type: str
    bottom_colour: str
    shoe_colour: str
    hair_length: str
    hair_colour: str | None  # None when bald
    headwear: str
    headwear_colour: str | None  # None without headwear
    bag: str
    bag_colour: str | None  # None without a bag
    carried: str
    # Hidden, view-invariant traits (never stated by captions).
    skin: RGB
    top_rgb: RGB
    bottom_rgb: RGB
    shoe_rgb: RGB
    hair_rgb: RGB
    headwear_rgb: RGB
    bag_rgb: RGB
    height_scale: float  # relative body height, 0.92-1.06

    def attributes(self) -> dict[str, str | None]:
        """The caption-visible attributes, by name (see ATTRIBUTE_VALUES)."""
        return {name: getattr(self, name) for name in ATTRIBUTE_VALUES}

    def signature(self) -> tuple[str | None, ...]:
        """What makes two identities distinguishable by description; unique within a world."""
        return tuple(self.attributes().values())

    def colour_words(self) -> set[str]:
        """Every colour word a true caption of this person may contain."""
        words = {self.top_colour, self.bottom_colour, self.shoe_colour}
        words.update(c for c in (self.hair_colour, self.headwear_colour, self.bag_colour) if c)
        return words


def _pick(rng: np.random.Generator, values: Sequence[str], weights: Sequence[float] | None = None) -> str:
    if weights is None:
        return values[int(rng.integers(len(values)))]
    # inverse-CDF draw; rng.choice(p=...) does the same at ~10x the cost for a handful of values
    target = rng.random() * sum(weights)
    for value, weight in zip(values, weights):
        target -= weight
        if target < 0:
            return value
    return next(v for v, w in zip(reversed(values), reversed(weights)) if w > 0)


def _shade(rng: np.random.Generator, base: RGB, spread: int = 14) -> RGB:
    jitter = rng.integers(-spread, spread + 1, size=3)
    return tuple(int(v) for v in np.clip(np.asarray(base) + jitter, 0, 255))  # type: ignore[return-value]


def sample_identity(rng: np.random.Generator, pid: int) -> Identity:
    """Draw one person. Distributions are mildly gendered (as in real pedestrian data), never exclusive
    except where it would look odd in 64-pixel-wide crops (bald women, skirts for men)."""
    gender = _pick(rng, GENDERS)
    man = gender == "man"
    top_type = _pick(rng, TOP_TYPES, [3, 2, 2, 1.5, 1, 1.5])
    if man:
        bottom_type = _pick(rng, BOTTOM_TYPES, [6, 3, 0, 0])
        hair_length = _pick(rng, HAIR_LENGTHS, [1, 6, 1.5, 0.7])
    else:
        bottom_type = _pick(rng, BOTTOM_TYPES, [4, 2, 2.5, 1.5])
        hair_length = _pick(rng, HAIR_LENGTHS, [0, 2, 3, 4])
    hair_colour = None if hair_length == "bald" else _pick(rng, tuple(HAIR_COLOURS), [4, 4, 2, 1, 1])
    headwear = _pick(rng, HEADWEAR, [5, 2, 1.5, 1.5])
    bag = _pick(rng, BAGS, [4, 3, 2, 2 if not man else 0.5])
    carried = _pick(rng, CARRIED, [6, 1, 1.5, 1, 1])
    top_colour = _pick(rng, tuple(COLOURS))
    bottom_colour = _pick(rng, BOTTOM_COLOURS)
    shoe_colour = _pick(rng, SHOE_COLOURS)
    headwear_colour = None if headwear == "none" else _pick(rng, tuple(COLOURS))
    bag_colour = None if bag == "none" else _pick(rng, tuple(COLOURS))
    build = _pick(rng, BUILDS, [1, 2, 1])
    skin = SKIN_TONES[int(rng.integers(len(SKIN_TONES)))]
    return Identity(
        pid=pid,
        gender=gender,
        build=build,
        top_type=top_type,
        top_colour=top_colour,
        bottom_type=bottom_type,
        bottom_colour=bottom_colour,
        shoe_colour=shoe_colour,
        hair_length=hair_length,
        hair_colour=hair_colour,
        headwear=headwear,
        headwear_colour=headwear_colour,
        bag=bag,
        bag_colour=bag_colour,
        carried=carried,
        skin=_shade(rng, skin, 6),
        top_rgb=_shade(rng, COLOURS[top_colour]),
        bottom_rgb=_shade(rng, COLOURS[bottom_colour]),
        shoe_rgb=_shade(rng, COLOURS[shoe_colour]),
        hair_rgb=_shade(rng, HAIR_COLOURS[hair_colour] if hair_colour else skin, 10),
        headwear_rgb=_shade(rng, COLOURS[headwear_colour] if headwear_colour else (0, 0, 0)),
        bag_rgb=_shade(rng, COLOURS[bag_colour] if bag_colour else (0, 0, 0)),
        height_scale=float(rng.uniform(0.92, 1.06)),
    )


def sample_identities(rng: np.random.Generator, count: int, first_pid: int = 0) -> list[Identity]:
    """`count` people with pairwise different signatures, numbered from `first_pid`."""
    people: list[Identity] = []
    seen: set[tuple[str | None, ...]] = set()
    while len(people) < count:
        person = sample_identity(rng, first_pid + len(people))
        if person.signature() in seen:  # two identical descriptions would make retrieval ill-posed
            continue
        seen.add(person.signature())
        people.append(person)
    return people
