"""The vocabulary of the pipeline: stages in order and the reason codes a rejected row or crop gets.

The codes of the synthetic web corpus (`gadms.synth.web_outcomes`) are a subset of these with the
same strings (a test checks it), so the corpus's expected outcomes can be compared directly.
"""

from __future__ import annotations

from enum import StrEnum


class Stage(StrEnum):
    INPUT = "input"  # reading the input table: missing url/image, repeated id
    DEDUP = "dedup"  # same URL (before download) or same bytes (after download) as an earlier row
    DOWNLOAD = "download"  # URL checks, HTTP, body size and type, robots headers
    DECODE = "decode"  # image decoding and whole-image checks
    DETECT = "detect"  # person boxes: score, size, aspect
    POSE = "pose"  # keypoint rules on the boxes that passed detection; makes the crops
    MLLM_FILTER = "mllm_filter"  # the MLLM's verdict on each crop
    CAPTION = "caption"  # caption generation
    CAPTION_CHECK = "caption_check"  # caption validation


# Row-level stages come before the crops exist; crop-level ones judge each crop separately.
ROW_STAGES = (Stage.INPUT, Stage.DEDUP, Stage.DOWNLOAD, Stage.DECODE, Stage.DETECT, Stage.POSE)
CROP_STAGES = (Stage.MLLM_FILTER, Stage.CAPTION, Stage.CAPTION_CHECK)
STAGE_ORDER = (Stage.INPUT, Stage.DEDUP, Stage.DOWNLOAD, Stage.DECODE, Stage.DETECT, Stage.POSE,
               Stage.MLLM_FILTER, Stage.CAPTION, Stage.CAPTION_CHECK)  # fmt: skip


class Reason(StrEnum):
    # input
    MISSING_URL = "missing_url"  # no url and no image bytes in the row
    DUPLICATE_ID = "duplicate_id"  # the same id as an earlier row of the input
    # dedup
    DUPLICATE_URL = "duplicate_url"
    DUPLICATE_IMAGE = "duplicate_image"
    # download
    BAD_SCHEME = "bad_scheme"
    BAD_URL = "bad_url"  # not parseable, no host
    BLOCKED_ADDRESS = "blocked_address"
    DNS_ERROR = "dns_error"
    CONNECTION_ERROR = "connection_error"
    HTTP_404 = "http_404"
    HTTP_500 = "http_500"
    HTTP_ERROR = "http_error"  # any other 4xx/5xx status; the detail names it
    TIMEOUT = "timeout"
    TOO_MANY_REDIRECTS = "too_many_redirects"
    TRUNCATED = "truncated"
    TOO_LARGE = "too_large"
    NOT_IMAGE_CONTENT_TYPE = "not_image_content_type"
    NOT_IMAGE_BYTES = "not_image_bytes"
    ROBOTS_NOAI = "robots_noai"
    READ_ERROR = "read_error"  # a local or s3:// input file that cannot be read
    # decode
    DECODE_ERROR = "decode_error"
    DECODE_TIMEOUT = "decode_timeout"
    DECOMPRESSION_BOMB = "decompression_bomb"
    TOO_SMALL = "too_small"
    EXTREME_ASPECT = "extreme_aspect"
    # detect / pose
    NO_PERSON = "no_person"
    POSE_CHECK = "pose_check"
    # mllm_filter
    FILTER_UNPARSEABLE = "filter_unparseable"
    FILTER_NOT_SINGLE_PERSON = "filter_not_single_person"
    FILTER_NOT_REAL_PERSON = "filter_not_real_person"
    FILTER_NOT_VISIBLE = "filter_not_visible"
    FILTER_POOR_QUALITY = "filter_poor_quality"
    # caption
    GENERATION_ERROR = "generation_error"
    # caption_check
    CAPTION_EMPTY = "caption_empty"
    CAPTION_TOO_SHORT = "caption_too_short"
    CAPTION_TOO_LONG = "caption_too_long"
    CAPTION_NOT_ENGLISH = "caption_not_english"
    CAPTION_BOILERPLATE = "caption_boilerplate"
    CAPTION_BACKGROUND = "caption_background"
    CAPTION_PLACEHOLDER = "caption_placeholder"
    CAPTION_TRUNCATED = "caption_truncated"  # generation stopped at max_tokens mid-sentence


REASON_STAGE: dict[Reason, Stage] = {
    Reason.MISSING_URL: Stage.INPUT,
    Reason.DUPLICATE_ID: Stage.INPUT,
    Reason.DUPLICATE_URL: Stage.DEDUP,
    Reason.DUPLICATE_IMAGE: Stage.DEDUP,
    **{r: Stage.DECODE for r in (Reason.DECODE_ERROR, Reason.DECODE_TIMEOUT, Reason.DECOMPRESSION_BOMB,
                                 Reason.TOO_SMALL, Reason.EXTREME_ASPECT)},
    Reason.NO_PERSON: Stage.DETECT,
    Reason.POSE_CHECK: Stage.POSE,
    **{r: Stage.MLLM_FILTER for r in Reason if r.value.startswith("filter_")},
    Reason.GENERATION_ERROR: Stage.CAPTION,
    **{r: Stage.CAPTION_CHECK for r in Reason if r.value.startswith("caption_")},
}  # fmt: skip
REASON_STAGE.update({r: Stage.DOWNLOAD for r in Reason if r not in REASON_STAGE})


class Rejected(Exception):
    """Raised inside a stage for one row or crop: becomes a reject record, never a crash."""

    def __init__(self, reason: Reason, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else str(reason))
        self.reason = reason
        self.detail = detail

    @property
    def stage(self) -> Stage:
        return REASON_STAGE[self.reason]
