"""True captions from attributes: pedestrian-description sentences through varied templates.

Every caption states the person's gender, top, bottom, shoes and hair, and every accessory the
person has (headwear, bag, held object); templates differ in sentence structure, order and verbs,
and some also say how the person is turned in this photo (facing the camera, walking away, to the
left), which is true of that image only. Captions use a small plain-ASCII alphabet (letters, digits,
space, comma, period, hyphen) so the CLIP tokenizer's text cleaning leaves them unchanged; that is
what lets `gadms.tokenizer` map the characters of injected noise to token positions exactly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from gadms.synth.attributes import Identity
from gadms.synth.person import Pose

CAPTION_ALPHABET = re.compile(r"^[A-Za-z0-9 ,.\-]+$")


def _article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def join_and(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


@dataclass(frozen=True)
class Phrases:
    """The pieces a template assembles, all lower case except where a sentence starts."""

    noun: str  # man / woman
    subj: str  # "a slim woman", "a man"
    pron: str  # he / she
    poss: str  # his / her
    top: str  # "a red t-shirt"
    bottom: str  # "black trousers", "a gray skirt"
    shoes: str  # "white shoes"
    hair: str  # "short black hair" / "a shaved head"
    acc_nouns: list[str]  # "a red cap", "a black backpack", "a phone"
    acc_verbs: list[str]  # "wears a red cap", "carries a black backpack", "is talking on a phone"
    view: str  # "is walking towards the camera"


_BUILD_WORDS = {"slim": ["slim", "thin"], "average": [""], "heavy": ["heavyset", "stout"]}


def _view_phrase(pose: Pose, rng: np.random.Generator) -> str:
    moving = pose.stride > 0
    walking = {
        "front": ["is walking towards the camera", "is facing the camera"],
        "back": ["is walking away from the camera", "is seen from behind"],
        "left": ["is walking to the left"],
        "right": ["is walking to the right"],
    }
    standing = {
        "front": ["is standing and facing the camera"],
        "back": ["is standing with the back to the camera"],
        "left": ["is standing and facing left"],
        "right": ["is standing and facing right"],
    }
    options = (walking if moving else standing)[pose.facing]
    return options[int(rng.integers(len(options)))]


def phrases_for(person: Identity, pose: Pose, rng: np.random.Generator) -> Phrases:
    words = _BUILD_WORDS[person.build]
    build = words[int(rng.integers(len(words)))]
    noun = person.gender
    subj = _article(f"{build} {noun}" if build else noun)
    bottom = f"{person.bottom_colour} {person.bottom_type}"
    if person.bottom_type in ("skirt", "long skirt"):
        bottom = _article(bottom)
    shoes = f"{person.shoe_colour} shoes" if rng.random() < 0.6 else f"a pair of {person.shoe_colour} shoes"
    if person.hair_length == "bald":
        hair = "a shaved head"
    else:
        hair = f"{person.hair_length} {person.hair_colour} hair"
    nouns, verbs = [], []
    if person.headwear != "none":
        item = _article(f"{person.headwear_colour} {person.headwear}")
        nouns.append(item)
        verbs.append(f"wears {item}")
    if person.bag != "none":
        item = _article(f"{person.bag_colour} {person.bag}")
        nouns.append(item)
        on_back = f"has {item} on {'his' if noun == 'man' else 'her'} back"
        verbs.append(on_back if person.bag == "backpack" else f"carries {item}")
    if person.carried != "none":
        nouns.append(_article(person.carried))
        holding = f"is holding {_article(person.carried)}"
        verbs.append("is talking on a phone" if person.carried == "phone" else holding)
    return Phrases(
        noun=noun,
        subj=subj,
        pron="he" if noun == "man" else "she",
        poss="his" if noun == "man" else "her",
        top=_article(f"{person.top_colour} {person.top_type}"),
        bottom=bottom,
        shoes=shoes,
        hair=hair,
        acc_nouns=nouns,
        acc_verbs=verbs,
        view=_view_phrase(pose, rng),
    )


def _cap(text: str) -> str:
    return text[0].upper() + text[1:]


def _slots(p: Phrases) -> dict[str, str]:
    """Template slots; a capitalised name is the same phrase starting a sentence."""
    slots = {
        "noun": p.noun, "subj": p.subj, "pron": p.pron, "poss": p.poss, "top": p.top, "bottom": p.bottom,
        "shoes": p.shoes, "hair": p.hair, "view": p.view,
        "with_acc": f", with {join_and(p.acc_nouns)}" if p.acc_nouns else "",
        "acc_sentence": f" {_cap(p.pron)} {join_and(p.acc_verbs)}." if p.acc_verbs else "",
    }  # fmt: skip
    slots.update({_cap(k): _cap(slots[k]) for k in ("subj", "pron", "poss")})
    return slots


# Structures differ on purpose (order of clothing and hair, one or several sentences, participles
# vs. verbs, with or without the view), like the human-written benchmark captions.
TEMPLATES: tuple[str, ...] = (
    "{Subj} wearing {top} and {bottom}, with {shoes}. {Pron} has {hair}.{acc_sentence}",
    "{Subj} with {hair} is dressed in {top}, {bottom} and {shoes}{with_acc}.",
    "The {noun} {view}. {Pron} wears {top} over {bottom} and {shoes}, and has {hair}.{acc_sentence}",
    "{Subj} in {top} and {bottom} {view}. {Pron} has {hair} and wears {shoes}.{acc_sentence}",
    "This person is {subj} with {hair}. {Pron} is wearing {top}, {bottom} and {shoes}{with_acc}.",
    "{Subj} {view}, wearing {top}. {Pron} also wears {bottom} and {shoes}, and has {hair}.{acc_sentence}",
    "Wearing {top} and {bottom}, the {noun} {view}. {Pron} has {hair} and {shoes}.{acc_sentence}",
    "{Subj} has {hair} and wears {top}, {bottom} and {shoes}{with_acc}.",
    "{Subj} with {hair}. {Poss} top is {top} and {pron} wears {bottom} with {shoes}.{acc_sentence}",
    "The {noun} has {hair}, {top}, {bottom} and {shoes}{with_acc}. {Pron} {view}.",
)


def caption(person: Identity, pose: Pose, template: int, rng: np.random.Generator) -> str:
    """One true caption of `person` in `pose` through template number `template`."""
    text = TEMPLATES[template].format(**_slots(phrases_for(person, pose, rng)))
    text = " ".join(text.split())
    if not CAPTION_ALPHABET.match(text):  # a template bug, not a user error
        raise ValueError(f"caption has characters outside the caption alphabet: {text!r}")
    return text


def two_captions(person: Identity, pose: Pose, rng: np.random.Generator) -> tuple[str, str]:
    """Two different true captions of one image, from two different templates."""
    first, second = rng.choice(len(TEMPLATES), size=2, replace=False)
    return caption(person, pose, int(first), rng), caption(person, pose, int(second), rng)


def processed_tokens(text: str) -> list[str]:
    """The benchmarks' `processed_tokens`: lower-case words without punctuation."""
    return re.findall(r"[a-z0-9]+(?:-[a-z0-9]+)*", text.lower())
