"""Caption validation: what a usable WebPerson caption is, as one function with reason codes.

Checks, in order (the first failure is the reason): empty; an unfilled template placeholder
([colored top], {x}, <x>); refusal or chat boilerplate ("Sure, here is", "As an AI", "I'm sorry",
"Sentence Structure Reference"); not English (non-ASCII letters, non-word tokens); cut off by the
token limit (no sentence end, or the backend says it stopped at max_tokens); too short; too long;
talk about the background or surroundings.
"""

from __future__ import annotations

import re

from pipelines.dataset.config import CaptionCheckConfig
from pipelines.dataset.outcomes import Reason, Rejected

_PLACEHOLDER = re.compile(r"\[[^\]]{1,40}\]|\{[^}]{0,40}\}|<[^>]{1,40}>")
_BOILERPLATE = re.compile(
    r"\b(as an ai|language model|i'?m sorry|i am sorry|i cannot|i can'?t|i'?m unable|i am unable|"
    r"sorry, but|here is|here's|sure[,!.]|certainly[,!.]|of course[,!.]|sentence structure|"
    r"reference:|template|the user|assistant|in this image|in the image|the image shows|this image|"
    r"the photo shows|the picture shows)\b",
    re.I,
)
_BACKGROUND = re.compile(
    r"\b(background|backdrop|scenery|surroundings|landscape|sky|building|buildings|trees?|traffic|"
    r"crowd|in the distance|behind (?:him|her|them|the person))\b",
    re.I,
)
_WORD = re.compile(r"[A-Za-z]+(?:[-'][A-Za-z]+)*")


def words(text: str) -> list[str]:
    return text.split()


def english_ratios(text: str) -> tuple[float, float]:
    """(ASCII letters / all letters, plain-word tokens / all tokens)."""
    letters = [c for c in text if c.isalpha()]
    ascii_ratio = sum(c.isascii() for c in letters) / len(letters) if letters else 0.0
    tokens = words(text)
    plain = sum(bool(_WORD.fullmatch(t.strip(".,;:!?\"()"))) for t in tokens)
    return ascii_ratio, plain / len(tokens) if tokens else 0.0


def check_caption(text: str, cfg: CaptionCheckConfig, finish_reason: str | None = None) -> str:
    """The caption, whitespace-normalised, or Rejected with the first failed rule."""
    caption = " ".join((text or "").split())
    if not caption:
        raise Rejected(Reason.CAPTION_EMPTY)
    found = _PLACEHOLDER.search(caption)
    if found:
        raise Rejected(Reason.CAPTION_PLACEHOLDER, found.group(0))
    found = _BOILERPLATE.search(caption)
    if found:
        raise Rejected(Reason.CAPTION_BOILERPLATE, found.group(0))
    ascii_ratio, word_ratio = english_ratios(caption)
    if ascii_ratio < cfg.min_english_ratio or word_ratio < cfg.min_alpha_words_ratio:
        raise Rejected(Reason.CAPTION_NOT_ENGLISH, f"ascii letters {ascii_ratio:.2f}, plain words {word_ratio:.2f}")
    if finish_reason == "length" or (cfg.require_sentence_end and caption[-1] not in ".!?"):
        raise Rejected(Reason.CAPTION_TRUNCATED, caption[-30:])
    count = len(words(caption))
    if count < cfg.min_words:
        raise Rejected(Reason.CAPTION_TOO_SHORT, f"{count} words < {cfg.min_words}")
    if count > cfg.max_words:
        raise Rejected(Reason.CAPTION_TOO_LONG, f"{count} words > {cfg.max_words}")
    found = _BACKGROUND.search(caption)
    if found:
        raise Rejected(Reason.CAPTION_BACKGROUND, found.group(0))
    return caption
