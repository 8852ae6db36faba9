"""Sizes and knobs of a synthetic world, as one typed config with YAML profiles in configs/synth/.

`smoke` (tests, seconds) and `demo` (a few hundred identities, the offline demo's data) are the
shipped profiles; any field can be overridden on the command line (`cuhk.ids.train=50`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, Field, field_validator, model_validator

from gadms.config import Config, load_config
from gadms.errors import ConfigError
from gadms.synth.noise import NOISE_KINDS

PROFILE_DIR = Path(__file__).resolve().parents[2] / "configs" / "synth"


def _ordered(value: tuple[float, float]) -> tuple[float, float]:
    if value[0] > value[1]:
        raise ValueError(f"minimum {value[0]} is above maximum {value[1]}")
    return value


# [min, max] pairs, inclusive; YAML writes them as two-element lists.
_NonNegativeInt = Annotated[int, Field(ge=0)]
_PositiveInt = Annotated[int, Field(ge=1)]
_NonNegativeFloat = Annotated[float, Field(ge=0)]
IntRange = Annotated[tuple[_NonNegativeInt, _NonNegativeInt], AfterValidator(_ordered)]
CountRange = Annotated[tuple[_PositiveInt, _PositiveInt], AfterValidator(_ordered)]
FloatRange = Annotated[tuple[_NonNegativeFloat, _NonNegativeFloat], AfterValidator(_ordered)]


class CropConfig(Config):
    """Person crops of the benchmark and WebPerson sets."""

    height: IntRange = (160, 384)  # pixels, min and max (inclusive)
    aspect: FloatRange = (0.3, 0.45)  # width / height, min and max
    occlusion_prob: float = Field(0.25, ge=0, le=1)
    jpeg_quality: IntRange = (80, 95)

    @field_validator("height")
    @classmethod
    def _tall_enough(cls, value: tuple[int, int]) -> tuple[int, int]:
        if value[0] < 32:
            raise ValueError("crops under 32 pixels high cannot show a person")
        return value


class SplitIds(Config):
    """Identities per split (splits are by identity: no person is in two splits)."""

    train: int = Field(ge=1)
    val: int = Field(0, ge=0)
    test: int = Field(ge=1)


class CuhkConfig(Config):
    enabled: bool = True
    ids: SplitIds = SplitIds(train=8, val=2, test=2)
    images_per_id: CountRange = (2, 4)  # CUHK-PEDES averages about 3 images per identity


class IcfgConfig(Config):
    enabled: bool = True
    train_ids: int = Field(8, ge=1)
    test_ids: int = Field(2, ge=1)
    images_per_id: CountRange = (3, 6)  # ICFG-PEDES averages about 11


class RstpConfig(Config):
    enabled: bool = True
    ids: SplitIds = SplitIds(train=8, val=2, test=2)
    images_per_id: int = Field(5, ge=1)  # RSTPReid has exactly 5 images per identity


class WebPersonConfig(Config):
    enabled: bool = True
    ids: int = Field(16, ge=1)
    images_per_id: CountRange = (1, 3)
    rows_per_shard: int = Field(64, ge=1)
    output: str | None = None  # local path or s3:// URI; default <out>/webperson


class NoiseConfig(Config):
    """Caption noise of the WebPerson captions (benchmark captions stay clean, like human labels)."""

    rate: float = Field(0.0, ge=0, le=1)  # probability that a caption gets one injected noise span
    kinds: dict[str, float] = Field(default_factory=lambda: {k: 1.0 for k in NOISE_KINDS})

    @field_validator("kinds")
    @classmethod
    def _known_kinds(cls, kinds: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(kinds) - set(NOISE_KINDS))
        if unknown:
            raise ValueError(f"unknown noise kinds {unknown} (known: {', '.join(NOISE_KINDS)})")
        if any(w < 0 for w in kinds.values()) or not any(w > 0 for w in kinds.values()):
            raise ValueError("weights must be >= 0 with at least one > 0")
        return kinds


class WebPolicy(Config):
    """The rules a correct dataset pipeline applies; the corpus's expected outcomes follow from them.

    A pipeline test should configure the pipeline with these same values (they are also written to
    <web>/corpus.json). Bad cases are built far from every threshold, so small differences in how a
    pipeline measures (a box a few pixels larger) never change the expected outcome.
    """

    timeout_s: float = Field(2.0, gt=0)  # per request
    max_redirects: int = Field(3, ge=0)
    max_body_bytes: int = Field(2 * 1024 * 1024, ge=1024)
    max_image_pixels: int = Field(40_000_000, ge=1)
    min_image_side: int = Field(64, ge=1)
    max_aspect_ratio: float = Field(4.0, ge=1)  # long side / short side of a whole image
    person_min_short_side: int = Field(90, ge=1)  # METHOD.md section 5
    person_aspect: FloatRange = (0.25, 0.5)  # box width / height
    pose_min_keypoints: int = Field(8, ge=0)
    pose_min_hips: int = Field(1, ge=0)
    pose_min_head: int = Field(2, ge=0)


class WebCorpusConfig(Config):
    enabled: bool = True
    base_url: str = "http://127.0.0.1:8000"  # where the folder will be served; see rebase_web_corpus
    scenes: int = Field(6, ge=1)  # plain kept scenes, on top of one row per kept format variant
    copies: int = Field(1, ge=1)  # rows per bad case
    slow_delay_s: float = Field(5.0, gt=0)  # the slow case; must exceed policy.timeout_s
    ok_delay_s: float = Field(0.3, ge=0)  # a slightly slow but acceptable answer
    policy: WebPolicy = WebPolicy()

    @field_validator("base_url")
    @classmethod
    def _http_base(cls, url: str) -> str:
        if not url.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL")
        return url.rstrip("/")

    @model_validator(mode="after")
    def _slow_is_slow(self) -> WebCorpusConfig:
        if self.slow_delay_s <= self.policy.timeout_s or self.ok_delay_s >= self.policy.timeout_s:
            raise ValueError("need ok_delay_s < policy.timeout_s < slow_delay_s")
        return self


class ContactSheetConfig(Config):
    enabled: bool = True
    people: int = Field(8, ge=1)
    views: int = Field(2, ge=1)


class SynthConfig(Config):
    """A whole synthetic world; every output is a pure function of this config (seed included)."""

    seed: int = Field(0, ge=0)
    crops: CropConfig = CropConfig()
    noise: NoiseConfig = NoiseConfig()
    cuhk: CuhkConfig = CuhkConfig()
    icfg: IcfgConfig = IcfgConfig()
    rstp: RstpConfig = RstpConfig()
    webperson: WebPersonConfig = WebPersonConfig()
    web: WebCorpusConfig = WebCorpusConfig()
    contact_sheet: ContactSheetConfig = ContactSheetConfig()


def profile_path(size: str) -> Path:
    path = PROFILE_DIR / f"{size}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in PROFILE_DIR.glob("*.yaml")) if PROFILE_DIR.is_dir() else []
        known_text = ", ".join(known) or "none"
        raise ConfigError(f"unknown size {size!r}: no {path} (known: {known_text}; or pass --config FILE)")
    return path


def load_synth_config(
    size: str | None = None, path: str | Path | None = None, overrides: Sequence[str] = ()
) -> SynthConfig:
    """`--config FILE` wins over `--size NAME` (configs/synth/NAME.yaml); neither gives the defaults."""
    source = path if path is not None else (profile_path(size) if size else None)
    return load_config(SynthConfig, source, overrides)
