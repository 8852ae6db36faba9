"""Caption noise: the recorded token positions are exactly where open_clip's tokenizer puts the noise."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pyarrow.parquet as pq
import pytest
from open_clip.tokenizer import SimpleTokenizer
from synth_world import make_person, smoke_config, smoke_world  # noqa: F401  (fixtures)

from gadms.synth.attributes import sample_identities
from gadms.synth.captions import two_captions
from gadms.synth.crops import sample_pose
from gadms.synth.noise import BACKGROUND_TALK, NOISE_KINDS, add_noise
from gadms.tokenizer import EOT_ID, MAX_TEXT_TOKENS, SOT_ID, caption_tokenizer

ALL_KINDS = {k: 1.0 for k in NOISE_KINDS}


@pytest.fixture(scope="module")
def open_clip_tokenizer() -> SimpleTokenizer:
    return SimpleTokenizer()


def context_ids(tokenizer: SimpleTokenizer, text: str) -> list[int]:
    """What the model sees: SOT, the BPE ids, EOT (open_clip's tokenizer() without padding)."""
    return [tokenizer.sot_token_id, *tokenizer.encode(text), tokenizer.eot_token_id]


def normalised(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+|[^\sa-z0-9]", text.lower()))


def test_special_ids_match_open_clip(open_clip_tokenizer: SimpleTokenizer) -> None:
    assert (SOT_ID, EOT_ID) == (open_clip_tokenizer.sot_token_id, open_clip_tokenizer.eot_token_id)


def test_hand_worked_wrong_colour_position(open_clip_tokenizer: SimpleTokenizer) -> None:
    # "A man wearing a red t-shirt." -> SOT a man wearing a red t - shirt . EOT: "red" sits at position 5.
    person = make_person(headwear="none", headwear_colour=None)
    text = "A man wearing a red t-shirt."
    noisy = add_noise(text, person, 1.0, {"wrong_colour": 1.0}, np.random.default_rng(0))
    (span,) = noisy.spans
    assert span.kind == "wrong_colour" and span.replaced == "red"
    assert span.text not in person.colour_words()
    assert span.text in {"orange", "yellow", "green", "purple", "pink", "gray"}  # not the person's colours
    assert noisy.text == f"A man wearing a {span.text} t-shirt."
    assert span.token_positions == (5,)
    ids = context_ids(open_clip_tokenizer, noisy.text)
    assert len(ids) == 11 and open_clip_tokenizer.decode([ids[5]]).strip() == span.text


def test_hand_worked_background_sentence_position(open_clip_tokenizer: SimpleTokenizer) -> None:
    # One sentence (positions 1..9 incl. the period), so background talk can only go after it: from 10 on.
    text = "A man wearing a red t-shirt."
    noisy = add_noise(text, make_person(), 1.0, {"background": 1.0}, np.random.default_rng(5))
    (span,) = noisy.spans
    assert noisy.text == f"{text} {span.text}"
    assert span.text in {s.format(obj="him") for s in BACKGROUND_TALK}
    n = len(open_clip_tokenizer.encode(span.text))
    assert span.token_positions == tuple(range(10, 10 + n))


@pytest.mark.parametrize("kind", NOISE_KINDS)
def test_positions_decode_to_the_injected_text(kind: str, open_clip_tokenizer: SimpleTokenizer) -> None:
    rng = np.random.default_rng(21)
    for person in sample_identities(rng, 60):
        for text in two_captions(person, sample_pose(rng), rng):
            noisy = add_noise(text, person, 1.0, {kind: 1.0}, rng)
            (span,) = noisy.spans
            assert noisy.text[span.char_start : span.char_end] == span.text
            ids = context_ids(open_clip_tokenizer, noisy.text)
            assert 0 not in span.token_positions and max(span.token_positions) < len(ids) - 1  # never SOT/EOT
            assert list(span.token_positions) == sorted(span.token_positions)
            assert span.token_positions == tuple(range(span.token_positions[0], span.token_positions[-1] + 1))
            decoded = open_clip_tokenizer.decode([ids[p] for p in span.token_positions])
            assert normalised(decoded) == normalised(span.text), (noisy.text, span)
            # the rest of the caption is the original text, token for token
            rest = [t for i, t in enumerate(ids) if i not in span.token_positions]
            if kind != "wrong_colour":
                assert rest == context_ids(open_clip_tokenizer, text)


def test_noise_rate_is_the_fraction_of_noisy_captions() -> None:
    rng = np.random.default_rng(8)
    people = sample_identities(rng, 400)
    for rate in (0.0, 0.3, 1.0):
        noisy = 0
        total = 0
        for person in people:
            for text in two_captions(person, sample_pose(rng), rng):
                noisy += bool(add_noise(text, person, rate, ALL_KINDS, rng).spans)
                total += 1
        sigma = math.sqrt(total * rate * (1 - rate))
        assert abs(noisy - rate * total) <= 4 * sigma + 1e-9, (rate, noisy, total)


def test_every_generated_caption_fits_the_clip_context(smoke_world) -> None:  # noqa: F811
    tokenizer = caption_tokenizer()
    captions = []
    annotations = ("CUHK-PEDES/reid_raw.json", "ICFG-PEDES/ICFG-PEDES.json", "RSTPReid/data_captions.json")
    for annotation in annotations:
        captions += [c for r in json.loads((smoke_world / annotation).read_text()) for c in r["captions"]]
    table = pq.read_table(smoke_world / "webperson", columns=["caption1", "caption2"]).to_pylist()
    captions += [row[k] for row in table for k in ("caption1", "caption2")]
    assert len(captions) > 300
    for text in captions:
        assert 0 < len(tokenizer.encode(text)) <= MAX_TEXT_TOKENS, text


def test_span_positions_refuse_spans_that_cut_words() -> None:
    tokenizer = caption_tokenizer()
    text = "a man in a red shirt. the street is busy today."
    assert tokenizer.span_positions(text, 11, 14) == [5]  # "red": after sot, a, man, in, a
    start = text.index("the street")
    assert tokenizer.span_positions(text, start, len(text)) == list(range(8, 8 + 6))
    with pytest.raises(ValueError, match="whole words"):
        tokenizer.span_positions(text, 12, 14)  # "ed" of "red"


def test_webperson_noise_columns_are_consistent(
    smoke_world, smoke_config, open_clip_tokenizer: SimpleTokenizer  # noqa: F811
) -> None:
    rows = pq.read_table(smoke_world / "webperson").to_pylist()
    noisy = 0
    kinds = set()
    for row in rows:
        for k in ("caption1", "caption2"):
            spans = json.loads(row[f"{k}_noise"])
            positions = sorted(p for s in spans for p in s["token_positions"])
            assert row[f"{k}_noise_positions"] == positions
            ids = context_ids(open_clip_tokenizer, row[k])
            for span in spans:
                kinds.add(span["kind"])
                assert row[k][span["char_start"] : span["char_end"]] == span["text"]
                decoded = open_clip_tokenizer.decode([ids[p] for p in span["token_positions"]])
                assert normalised(decoded) == normalised(span["text"])
            noisy += bool(spans)
    total = 2 * len(rows)
    rate = smoke_config.noise.rate
    assert abs(noisy - rate * total) <= 4 * math.sqrt(total * rate * (1 - rate)), (noisy, total)
    assert len(kinds) >= 2
