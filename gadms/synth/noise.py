"""Caption noise with ground truth: false or irrelevant words injected at a given rate.

Web captions written by MLLMs contain errors; GA-DMS learns to find and mask them. To measure
that, a noisy caption records exactly which tokens are noise. Kinds:
- `wrong_colour`: one colour word replaced by a different colour (false content);
- `false_object`: a sentence about something the person does not have (false content);
- `background`: a sentence about the surroundings (irrelevant to the person);
- `filler`: filler words inside a sentence ("basically", "you know,") (irrelevant).
Each `NoiseSpan` gives the injected text's character span in the final caption and its CLIP token
positions (context index space: SOT at 0, see `gadms.tokenizer`). The noise rate is the probability that
a caption receives one injection; kinds are drawn with the configured weights.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np

from gadms.synth.attributes import COLOURS, HAIR_COLOURS, Identity
from gadms.tokenizer import MAX_TEXT_TOKENS, caption_tokenizer

NOISE_KINDS = ("wrong_colour", "false_object", "background", "filler")
FALSE_OBJECTS = (
    "{Pron} is carrying a guitar.", "{Pron} is walking a small dog.", "{Pron} holds a red balloon.",
    "{Pron} is pushing a bicycle.", "{Pron} wears a long scarf.", "{Pron} pulls a large suitcase.",
    "{Pron} is riding a skateboard.", "{Pron} wears sunglasses and gloves.",
)  # fmt: skip
BACKGROUND_TALK = (
    "There is a parked car behind {obj}.", "The street is busy today.", "A tree stands in the background.",
    "The photo was taken near a shop window.", "Some people are waiting at a bus stop.",
    "The weather looks cloudy.", "A white van drives past.", "The wall behind {obj} is covered in posters.",
)  # fmt: skip
FILLERS = ("basically", "um,", "you know,", "kind of", "actually", "sort of", "like,", "i guess")
_ALL_COLOUR_WORDS = sorted(set(COLOURS) | set(HAIR_COLOURS))
_COLOUR_RE = re.compile(r"\b(" + "|".join(_ALL_COLOUR_WORDS) + r")\b")


@dataclass(frozen=True)
class NoiseSpan:
    kind: str
    char_start: int  # [char_start, char_end) in the noisy caption
    char_end: int
    text: str
    token_positions: tuple[int, ...]  # CLIP context positions, SOT = 0
    replaced: str | None = None  # for wrong_colour: the true word that was replaced

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["token_positions"] = list(self.token_positions)
        return data


@dataclass(frozen=True)
class NoisyCaption:
    text: str
    spans: tuple[NoiseSpan, ...] = ()

    @property
    def token_positions(self) -> list[int]:
        return sorted({p for span in self.spans for p in span.token_positions})


def _sentence_ends(text: str) -> list[int]:
    """Indices just after each '. ' boundary and the final period (where a sentence may go)."""
    return [m.end() for m in re.finditer(r"\.(?= )", text)] + ([len(text)] if text.endswith(".") else [])


Injection = tuple[str, int, int, str | None]  # noisy text, span start, span end, replaced word


def _inject(text: str, person: Identity, kind: str, rng: np.random.Generator) -> Injection | None:
    """The noisy text and the injected span, or None when this kind cannot apply to `text`."""
    pron = "he" if person.gender == "man" else "she"
    obj = "him" if person.gender == "man" else "her"
    if kind == "wrong_colour":
        matches = list(_COLOUR_RE.finditer(text))
        if not matches:
            return None
        m = matches[int(rng.integers(len(matches)))]
        truth = person.colour_words()
        options = [c for c in COLOURS if c not in truth and c != m.group()]  # false everywhere on them
        new = options[int(rng.integers(len(options)))]
        return text[: m.start()] + new + text[m.end() :], m.start(), m.start() + len(new), m.group()
    if kind in ("false_object", "background"):
        bank = FALSE_OBJECTS if kind == "false_object" else BACKGROUND_TALK
        sentence = bank[int(rng.integers(len(bank)))].format(Pron=pron.capitalize(), obj=obj)
        ends = _sentence_ends(text)
        at = ends[int(rng.integers(len(ends)))]
        start = at + 1
        return text[:at] + " " + sentence + text[at:], start, start + len(sentence), None
    if kind == "filler":
        # after a space that follows a word (not after a comma or period, to keep it a mid-sentence aside)
        spaces = [m.start() for m in re.finditer(r"(?<=[a-z]) (?=[a-z])", text)]
        if not spaces:
            return None
        at = spaces[int(rng.integers(len(spaces)))] + 1
        filler = FILLERS[int(rng.integers(len(FILLERS)))]
        return text[:at] + filler + " " + text[at:], at, at + len(filler), None
    raise ValueError(f"unknown noise kind {kind!r} (known: {', '.join(NOISE_KINDS)})")


def add_noise(
    text: str, person: Identity, rate: float, weights: Mapping[str, float], rng: np.random.Generator
) -> NoisyCaption:
    """With probability `rate`, inject one noise span into a true caption of `person`."""
    if rate <= 0 or rng.random() >= rate:
        return NoisyCaption(text)
    kinds = [k for k in NOISE_KINDS if weights.get(k, 0) > 0]
    p = np.array([weights[k] for k in kinds], dtype=float)
    order = list(rng.choice(len(kinds), size=len(kinds), replace=False, p=p / p.sum()))
    tokenizer = caption_tokenizer()
    for index in order:  # the first kind that applies and keeps the caption inside the context
        injected = _inject(text, person, kinds[index], rng)
        if injected is None:
            continue
        noisy, start, end, replaced = injected
        if len(tokenizer.encode(noisy)) > MAX_TEXT_TOKENS:
            continue
        span = NoiseSpan(
            kind=kinds[index],
            char_start=start,
            char_end=end,
            text=noisy[start:end],
            token_positions=tuple(tokenizer.span_positions(noisy, start, end)),
            replaced=replaced,
        )
        return NoisyCaption(noisy, (span,))
    return NoisyCaption(text)
