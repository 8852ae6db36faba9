"""Identities and captions: enough attributes, unique people, captions that are true and varied."""

from __future__ import annotations

import re

import numpy as np
from synth_world import make_person

from gadms.synth.attributes import ATTRIBUTE_VALUES, COLOURS, HAIR_COLOURS, Identity, sample_identities
from gadms.synth.captions import TEMPLATES, caption, processed_tokens, two_captions
from gadms.synth.crops import sample_pose
from gadms.synth.person import Pose

ALL_COLOUR_WORDS = set(COLOURS) | set(HAIR_COLOURS)


def test_at_least_eight_attributes_with_several_values_each() -> None:
    several = {name: values for name, values in ATTRIBUTE_VALUES.items() if len(values) >= 3}
    assert len(several) >= 8, sorted(several)
    assert all(len(values) >= 2 for values in ATTRIBUTE_VALUES.values())


def test_every_attribute_value_occurs_and_people_are_unique() -> None:
    people = sample_identities(np.random.default_rng(3), 3000)
    for name, values in ATTRIBUTE_VALUES.items():
        seen = {getattr(p, name) for p in people} - {None}
        assert seen == set(values), (name, set(values) - seen)
    assert len({p.signature() for p in people}) == len(people)
    assert [p.pid for p in people] == list(range(3000))
    again = sample_identities(np.random.default_rng(3), 3000)
    assert again == people  # deterministic, hidden traits included


def test_hidden_colours_stay_close_to_their_names() -> None:
    for p in sample_identities(np.random.default_rng(4), 300):
        assert max(abs(a - b) for a, b in zip(p.top_rgb, COLOURS[p.top_colour])) <= 14
        assert max(abs(a - b) for a, b in zip(p.shoe_rgb, COLOURS[p.shoe_colour])) <= 14


def test_hand_worked_caption() -> None:
    person = make_person()
    pose = Pose(facing="front", stride=0.3)
    # template 7: "{Subject} has {hair} and wears {top}, {bottom} and {shoes}{, with accessories}."
    start = "A man has short brown hair and wears a red t-shirt, black trousers and"
    expected = {f"{start} white shoes, with a blue cap.", f"{start} a pair of white shoes, with a blue cap."}
    texts = {caption(person, pose, 7, np.random.default_rng(seed)) for seed in range(20)}
    assert texts == expected
    # template 2 says how the person is turned in this photo
    back = caption(person, Pose(facing="back", stride=0.0), 2, np.random.default_rng(0))
    assert back.startswith("The man is standing with the back to the camera. He wears a red t-shirt over")
    assert back.endswith(" He wears a blue cap.")


def test_accessories_and_bald_people_are_described() -> None:
    person = make_person(hair_length="bald", hair_colour=None, headwear="none", headwear_colour=None,
                         bag="backpack", bag_colour="green", carried="umbrella", gender="woman")  # fmt: skip
    text = caption(person, Pose("left", 0.3), 0, np.random.default_rng(0))
    assert "a shaved head" in text
    assert "has a green backpack on her back" in text and "is holding an umbrella" in text
    assert "cap" not in text and " hair" not in text


def _true_phrases(p: Identity) -> list[str]:
    phrases = [f"{p.top_colour} {p.top_type}", f"{p.bottom_colour} {p.bottom_type}", f"{p.shoe_colour} shoes"]
    phrases.append("a shaved head" if p.hair_length == "bald" else f"{p.hair_length} {p.hair_colour} hair")
    if p.headwear != "none":
        phrases.append(f"{p.headwear_colour} {p.headwear}")
    if p.bag != "none":
        phrases.append(f"{p.bag_colour} {p.bag}")
    if p.carried != "none":
        phrases.append(p.carried)
    return phrases


VIEW_WORDS = {
    "front": ("towards the camera", "facing the camera"),
    "back": ("away from the camera", "from behind", "back to the camera"),
    "left": ("to the left", "facing left"),
    "right": ("to the right", "facing right"),
}


def test_every_caption_states_every_attribute_and_nothing_false() -> None:
    rng = np.random.default_rng(11)
    for person in sample_identities(rng, 250):
        pose = sample_pose(rng)
        for template in range(len(TEMPLATES)):
            text = caption(person, pose, template, rng)
            lower = text.lower()
            for phrase in _true_phrases(person):
                assert phrase in lower, (phrase, text)
            assert re.search(rf"\b{person.gender}\b", lower), text
            colours = {w for w in re.findall(r"[a-z]+", lower) if w in ALL_COLOUR_WORDS}
            assert colours <= person.colour_words(), text
            other_views = [w for facing, words in VIEW_WORDS.items() if facing != pose.facing for w in words]
            assert not any(w in lower for w in other_views), (pose.facing, text)


def test_two_captions_per_image_differ() -> None:
    rng = np.random.default_rng(2)
    for person in sample_identities(rng, 100):
        first, second = two_captions(person, sample_pose(rng), rng)
        assert first != second


def test_processed_tokens_are_lowercase_words() -> None:
    words = ["a", "man", "wears", "a", "red", "t-shirt", "and", "shoes"]
    assert processed_tokens("A man wears a red t-shirt, and shoes.") == words
