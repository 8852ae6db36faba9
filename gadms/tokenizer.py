"""CLIP BPE captions as fixed-length id rows, plus the token-layout facts every other module shares.

Layout of one row (METHOD.md section 1): `<sot> content... <eot> <pad>...`, `context_length` ids
(77). The vocabulary is CLIP's 49,408 BPE ids; the mask token re-purposes id 49405, the last BPE
merge, as the authors' release does, so the embedding table keeps its pretrained size. That merge
is the word "jekyll": a caption that contains it gets id 49405 natively, which the masking treats
like a mask token (never masked again). Person descriptions do not use the word; we accept that.

Positions are found the way CLIP pools text: the EOT id is the largest id in the vocabulary, so the
EOT position of a row is its argmax (this holds for masked rows too: mask and random replacement
ids are all below it).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import torch

PAD_ID = 0
MASK_ID = 49405
SOT_ID = 49406
EOT_ID = 49407
VOCAB_SIZE = 49408
CONTEXT_LENGTH = 77
MAX_TEXT_TOKENS = CONTEXT_LENGTH - 2  # BPE tokens that fit between SOT and EOT without cutting
# Ids a random replacement may take (BERT rule, METHOD.md section 3): every ordinary BPE id.
FIRST_WORD_ID = 1
LAST_WORD_ID = MASK_ID - 1


class CaptionTokenizer:
    """Lower-cased CLIP BPE (open_clip's tokenizer) into `[B, context_length]` int64 rows.

    A caption longer than the context is cut and its last kept position becomes EOT, as in CLIP.
    """

    def __init__(self, context_length: int = CONTEXT_LENGTH) -> None:
        if context_length < 3:
            raise ValueError(f"context_length must be >= 3 (sot, one word, eot), got {context_length}")
        from open_clip.tokenizer import SimpleTokenizer  # heavy import, only where text is tokenised

        self.context_length = context_length
        self._bpe = SimpleTokenizer(context_length=context_length)
        assert self._bpe.sot_token_id == SOT_ID and self._bpe.eot_token_id == EOT_ID
        self._byte_decoder = self._bpe.byte_decoder

    def __call__(self, texts: str | Sequence[str]) -> torch.Tensor:
        if isinstance(texts, str):
            texts = [texts]
        return self._bpe(list(texts), context_length=self.context_length)

    def encode(self, text: str) -> list[int]:
        """BPE ids of `text` without SOT/EOT or padding (open_clip's cleaning and lower-casing)."""
        return self._bpe.encode(text)

    def span_positions(self, text: str, start: int, end: int) -> list[int]:
        """Context positions (SOT = 0) of the tokens of `text[start:end]`, e.g. an injected phrase.

        CLIP splits text into words before BPE, so when the span starts and ends at word
        boundaries the ids of before + span + after are the ids of the whole; that is checked, and
        a span that cuts a word (whose ids would not be its own) is a ValueError.
        """
        before, inside, after = (self.encode(part) for part in (text[:start], text[start:end], text[end:]))
        if not inside or before + inside + after != self.encode(text):
            raise ValueError(f"characters {start}:{end} of {text!r} are not a run of whole words")
        return list(range(1 + len(before), 1 + len(before) + len(inside)))

    def token_strings(self, row: torch.Tensor | Sequence[int]) -> list[str]:
        """One readable string per id of a row, up to and including EOT (for plots and reports)."""
        ids = row.tolist() if isinstance(row, torch.Tensor) else list(row)
        out: list[str] = []
        for token_id in ids:
            out.append(self.token_string(token_id))
            if token_id == EOT_ID:
                break
        return out

    def token_string(self, token_id: int) -> str:
        if token_id == MASK_ID:
            return "<|mask|>"
        if token_id == PAD_ID:
            return "<pad>"
        piece = self._bpe.decoder[token_id]
        if token_id in (SOT_ID, EOT_ID):
            return piece
        text = bytearray(self._byte_decoder[c] for c in piece.replace("</w>", "")).decode(
            "utf-8", errors="replace"
        )
        return text


@lru_cache(maxsize=4)
def caption_tokenizer(context_length: int = CONTEXT_LENGTH) -> CaptionTokenizer:
    """A shared tokenizer per context length (building one parses the 1.3 MB BPE vocabulary)."""
    return CaptionTokenizer(context_length)


def eot_positions(tokens: torch.Tensor) -> torch.Tensor:
    """Index of the EOT id in each row, `[B]` (CLIP's argmax rule)."""
    return tokens.argmax(dim=-1)


def content_mask(tokens: torch.Tensor) -> torch.Tensor:
    """True at content positions, 0 < j < eot, `[B, N]` bool (METHOD.md section 2, step 6)."""
    positions = torch.arange(tokens.shape[-1], device=tokens.device)
    return (positions > 0) & (positions < eot_positions(tokens).unsqueeze(-1))


def maskable_mask(tokens: torch.Tensor) -> torch.Tensor:
    """Content positions holding an ordinary word id: never pad, sot, eot or mask (section 3)."""
    special = (tokens == PAD_ID) | (tokens == SOT_ID) | (tokens == EOT_ID) | (tokens == MASK_ID)
    return content_mask(tokens) & ~special
