"""What a correct dataset pipeline must do with each row of the synthetic web corpus.

The vocabulary (stages, reason codes, person verdicts) and the catalogue of corpus cases live
here, apart from the generator, so a pipeline and its tests can import them. A row is either
`kept` (it yields `expected_crops` person crops) or `rejected` at one `stage` with one `reason`.
Thresholds are those of `WebPolicy` (gadms.synth.config); every bad case sits far from them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Stage(StrEnum):
    DOWNLOAD = "download"  # URL checks, HTTP, body size and type
    DECODE = "decode"  # image decoding and whole-image checks
    DEDUP = "dedup"  # same URL (decidable before download) or same bytes (after download)
    DETECT = "detect"  # person boxes: size and aspect
    POSE = "pose"  # keypoint checks on the boxes that passed detection


class Reason(StrEnum):
    BAD_SCHEME = "bad_scheme"  # not http/https (ftp:, file:, data:)
    BLOCKED_ADDRESS = "blocked_address"  # private, link-local or metadata address, directly or via a redirect
    HTTP_404 = "http_404"
    HTTP_500 = "http_500"  # after the pipeline's retries
    TIMEOUT = "timeout"  # no answer within policy.timeout_s
    TOO_MANY_REDIRECTS = "too_many_redirects"  # a loop, or a chain longer than policy.max_redirects
    TRUNCATED = "truncated"  # the connection closed before Content-Length bytes arrived
    TOO_LARGE = "too_large"  # body over policy.max_body_bytes
    NOT_IMAGE_CONTENT_TYPE = "not_image_content_type"  # e.g. text/html
    NOT_IMAGE_BYTES = "not_image_bytes"  # image/* content type, but no image signature (or no body)
    ROBOTS_NOAI = "robots_noai"  # X-Robots-Tag: noai / noimageai
    DECODE_ERROR = "decode_error"  # a damaged file that downloaded completely
    DECOMPRESSION_BOMB = "decompression_bomb"  # declares more than policy.max_image_pixels
    TOO_SMALL = "too_small"  # shorter side under policy.min_image_side
    EXTREME_ASPECT = "extreme_aspect"  # long side / short side over policy.max_aspect_ratio
    DUPLICATE_URL = "duplicate_url"  # a lower id has the same URL and is kept
    DUPLICATE_IMAGE = "duplicate_image"  # a lower id has byte-identical content and is kept
    NO_PERSON = "no_person"  # no person box passes size and aspect
    POSE_CHECK = "pose_check"  # boxes passed, but none passes the keypoint rules


_DECODE_REASONS = (Reason.DECODE_ERROR, Reason.DECOMPRESSION_BOMB, Reason.TOO_SMALL, Reason.EXTREME_ASPECT)
REASON_STAGE: dict[Reason, Stage] = {
    **{r: Stage.DECODE for r in _DECODE_REASONS},
    Reason.DUPLICATE_URL: Stage.DEDUP,
    Reason.DUPLICATE_IMAGE: Stage.DEDUP,
    Reason.NO_PERSON: Stage.DETECT,
    Reason.POSE_CHECK: Stage.POSE,
}
REASON_STAGE.update({r: Stage.DOWNLOAD for r in Reason if r not in REASON_STAGE})  # all the others


class Verdict(StrEnum):
    """What happens to one person in a scene (each person has ground-truth box and keypoints)."""

    CROP = "crop"  # passes size, aspect and pose: the pipeline must produce this crop
    TOO_SMALL = "too_small"  # box shorter side under policy.person_min_short_side
    BAD_ASPECT = "bad_aspect"  # box width / height outside policy.person_aspect (e.g. lying down)
    POSE = "pose"  # box fine, keypoints fail (e.g. head outside the image)


@dataclass(frozen=True)
class Case:
    name: str
    description: str
    reason: Reason | None = None  # None: the row is kept

    @property
    def outcome(self) -> str:
        return "kept" if self.reason is None else "rejected"

    @property
    def stage(self) -> Stage | None:
        return None if self.reason is None else REASON_STAGE[self.reason]


_CASES = (
    # kept: scenes in every format and colour mode a pipeline must decode correctly
    Case("scene", "street scene, 1 to 4 people of various sizes, at least one croppable (JPEG/PNG/WebP)"),
    Case("scene_gif", "static GIF scene (palette image)"),
    Case("grayscale_jpeg", "8-bit grayscale JPEG (mode L)"),
    Case("palette_png", "palette PNG (mode P, 64 colours)"),
    Case("cmyk_jpeg", "CMYK JPEG"),
    # PIL's convert("RGB") clips 16-bit values to white: a pipeline must scale them to 8 bits
    Case("png_16bit", "16-bit grayscale PNG (mode I;16)"),
    Case("rgba_png", "RGBA PNG with a transparent frame"),
    Case("exif_rotated", "JPEG stored rotated with EXIF orientation 6; boxes are given upright"),
    Case("animated_gif", "animated GIF; the first frame is the scene"),
    Case("animated_webp", "animated WebP; the first frame is the scene"),
    Case("slow_ok", "answers after a short delay, well inside the timeout"),
    Case("redirect_ok", "one 302 redirect to the image"),
    Case("escaped_url", "URL with a percent-escaped space and a query string"),
    Case("no_extension", "URL without a file extension, served as image/jpeg"),
    Case("mislabelled_type", "PNG bytes served as image/jpeg (an image all the same)"),
    # rejected at download
    Case("bad_scheme", "ftp:, file: or data: URL", Reason.BAD_SCHEME),
    Case("blocked_address", "metadata, private or IPv4-mapped link-local address", Reason.BLOCKED_ADDRESS),
    Case("redirect_to_blocked", "302 from the test server to the metadata address", Reason.BLOCKED_ADDRESS),
    Case("http_404", "404 from the manifest, or a file that does not exist", Reason.HTTP_404),
    Case("http_500", "500 every time", Reason.HTTP_500),
    Case("slow", "answers only after slow_delay_s, past the timeout", Reason.TIMEOUT),
    Case("redirect_loop", "redirects to itself forever", Reason.TOO_MANY_REDIRECTS),
    Case("redirect_chain", "max_redirects + 1 hops before the image", Reason.TOO_MANY_REDIRECTS),
    Case("truncated_transfer", "announces the full Content-Length, then closes early", Reason.TRUNCATED),
    Case("too_large", "a valid PNG larger than max_body_bytes", Reason.TOO_LARGE),
    Case("html_page", "an HTML page (text/html)", Reason.NOT_IMAGE_CONTENT_TYPE),
    Case("text_as_jpeg", "a JSON error body served as image/jpeg", Reason.NOT_IMAGE_BYTES),
    Case("empty_body", "an empty 200 response served as image/jpeg", Reason.NOT_IMAGE_BYTES),
    Case("robots_noai", "valid image with X-Robots-Tag: noai", Reason.ROBOTS_NOAI),
    # rejected at decode
    Case("truncated_file", "a JPEG or PNG cut in half on disk (whole transfer)", Reason.DECODE_ERROR),
    Case("corrupt_png", "a PNG whose image data is damaged (CRC and zlib errors)", Reason.DECODE_ERROR),
    Case("decompression_bomb", "a ~100 KB PNG that declares 30000 x 30000 pixels", Reason.DECOMPRESSION_BOMB),
    Case("too_small", "tiny images (a 1x1 tracking GIF, a 40x30 thumbnail)", Reason.TOO_SMALL),
    Case("extreme_aspect", "banners and strips far beyond max_aspect_ratio", Reason.EXTREME_ASPECT),
    # rejected as duplicates of a kept row with a lower id
    Case("duplicate_url", "the same URL as a kept row", Reason.DUPLICATE_URL),
    Case("duplicate_image", "a kept row's file, byte for byte, at another URL", Reason.DUPLICATE_IMAGE),
    # rejected at detection / pose
    Case("no_person", "a scene with nobody in it", Reason.NO_PERSON),
    Case("small_people_only", "only people far too small to crop", Reason.NO_PERSON),
    Case("lying_person", "one large person lying down (box wider than tall)", Reason.NO_PERSON),
    Case("head_cropped", "one large person whose head is outside the image", Reason.POSE_CHECK),
)
CASES: dict[str, Case] = {case.name: case for case in _CASES}
