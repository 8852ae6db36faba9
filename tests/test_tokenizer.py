"""Caption rows: CLIP BPE layout, special ids, truncation, content and maskable positions."""

from __future__ import annotations

import torch

from gadms.tokenizer import (
    CONTEXT_LENGTH,
    EOT_ID,
    MASK_ID,
    PAD_ID,
    SOT_ID,
    CaptionTokenizer,
    content_mask,
    eot_positions,
    maskable_mask,
)


def test_row_layout_and_special_ids():
    tokens = CaptionTokenizer()(["A man in a RED shirt.", ""])
    assert tokens.shape == (2, CONTEXT_LENGTH) and tokens.dtype == torch.long
    row = tokens[0].tolist()
    eot = row.index(EOT_ID)
    assert row[0] == SOT_ID and eot == 8  # sot + "a man in a red shirt ." (7 ids)
    assert all(t == PAD_ID for t in row[eot + 1 :])
    assert tokens[1, :2].tolist() == [SOT_ID, EOT_ID]
    assert eot_positions(tokens).tolist() == [8, 1]


def test_long_captions_are_cut_and_end_with_eot():
    tokens = CaptionTokenizer()(" ".join(["red"] * 200))
    assert tokens[0, -1] == EOT_ID and tokens[0, 0] == SOT_ID
    assert int(content_mask(tokens).sum()) == CONTEXT_LENGTH - 2


def test_token_strings_are_readable():
    tokenizer = CaptionTokenizer()
    tokens = tokenizer("a man, carrying a bag")
    assert tokenizer.token_strings(tokens[0]) == [
        "<start_of_text>", "a", "man", ",", "carrying", "a", "bag", "<end_of_text>"
    ]
    assert tokenizer.token_string(MASK_ID) == "<|mask|>"


def test_content_and_maskable_positions():
    tokens = CaptionTokenizer()(["a man in a red shirt"])
    tokens[0, 2] = MASK_ID
    content = content_mask(tokens)[0]
    assert content.nonzero().flatten().tolist() == [1, 2, 3, 4, 5, 6]
    assert maskable_mask(tokens)[0].nonzero().flatten().tolist() == [1, 3, 4, 5, 6]
