"""Who is in which dataset, and the photos and captions of one identity.

All identities of a world are drawn at once (pairwise different descriptions) and handed out to
the datasets in a fixed order, so no person appears in two datasets or two splits. Every random
choice for a photo comes from a generator seeded by (world seed, dataset stream, pid, view), so a
photo does not depend on generation order: datasets can be generated in any order, or in parallel,
with the same bytes.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from gadms.synth.attributes import Identity, sample_identities
from gadms.synth.captions import two_captions
from gadms.synth.config import SynthConfig
from gadms.synth.crops import encode_image, render_crop, sample_crop_size, sample_view
from gadms.synth.noise import NoisyCaption, add_noise
from gadms.synth.person import PersonGeometry
from gadms.tokenizer import MAX_TEXT_TOKENS, caption_tokenizer


def stream_rng(seed: int, stream: str, *keys: int) -> np.random.Generator:
    """An independent generator per (seed, named stream, keys); stable across runs and platforms."""
    return np.random.default_rng([seed, zlib.crc32(stream.encode()), *keys])


@dataclass(frozen=True)
class PersonImage:
    """One rendered photo of one identity with its captions."""

    person: Identity
    view: int
    data: bytes  # the encoded file
    extension: str  # "png" or "jpg"
    height: int
    width: int
    captions: tuple[NoisyCaption, ...]
    geometry: PersonGeometry


@dataclass(frozen=True)
class WorldIdentities:
    """Identities per dataset and split, pids already numbered the way each dataset numbers them."""

    cuhk: dict[str, list[Identity]]
    icfg: dict[str, list[Identity]]
    rstp: dict[str, list[Identity]]
    webperson: list[Identity]


def _numbered(people: list[Identity], first_pid: int) -> list[Identity]:
    return [dataclasses.replace(p, pid=first_pid + i) for i, p in enumerate(people)]


def allocate_identities(cfg: SynthConfig) -> WorldIdentities:
    """Draw every identity of the world and split them by dataset and split (never shared)."""
    plan: list[tuple[str, str, int]] = []  # (dataset, split, count) in a fixed order
    if cfg.cuhk.enabled:
        plan += [("cuhk", s, getattr(cfg.cuhk.ids, s)) for s in ("train", "val", "test")]
    if cfg.icfg.enabled:
        plan += [("icfg", "train", cfg.icfg.train_ids), ("icfg", "test", cfg.icfg.test_ids)]
    if cfg.rstp.enabled:
        plan += [("rstp", s, getattr(cfg.rstp.ids, s)) for s in ("train", "val", "test")]
    if cfg.webperson.enabled:
        plan.append(("webperson", "train", cfg.webperson.ids))
    pool = sample_identities(stream_rng(cfg.seed, "identities"), sum(n for _, _, n in plan))
    out: dict[str, dict[str, list[Identity]]] = {"cuhk": {}, "icfg": {}, "rstp": {}, "webperson": {}}
    start = 0
    next_pid = {"cuhk": 1, "icfg": 0, "rstp": 0, "webperson": 0}  # CUHK-PEDES ids start at 1
    for dataset, split, count in plan:
        out[dataset][split] = _numbered(pool[start : start + count], next_pid[dataset])
        start += count
        next_pid[dataset] += count
    return WorldIdentities(
        cuhk={s: p for s, p in out["cuhk"].items() if p},
        icfg=out["icfg"],
        rstp={s: p for s, p in out["rstp"].items() if p},
        webperson=out["webperson"].get("train", []),
    )


def views_of(cfg: SynthConfig, stream: str, person: Identity, images_per_id: tuple[int, int] | int) -> int:
    if isinstance(images_per_id, int):
        return images_per_id
    low, high = images_per_id
    return int(stream_rng(cfg.seed, stream + "/views", person.pid).integers(low, high + 1))


def render_person_images(
    cfg: SynthConfig,
    stream: str,
    person: Identity,
    n_views: int,
    n_captions: int,
    image_format: str = "JPEG",
    noise_rate: float = 0.0,
    noise_kinds: Mapping[str, float] | None = None,
) -> list[PersonImage]:
    """`n_views` photos of `person`, each with `n_captions` (1 or 2) different captions."""
    if n_captions not in (1, 2):
        raise ValueError(f"n_captions must be 1 or 2, got {n_captions}")
    tokenizer = caption_tokenizer()
    images = []
    for view_index in range(n_views):
        rng = stream_rng(cfg.seed, stream, person.pid, view_index)
        view = sample_view(rng, cfg.crops.occlusion_prob)
        height, width = sample_crop_size(rng, cfg.crops.height, cfg.crops.aspect)
        image, geometry = render_crop(person, view, height, width, rng)
        quality = int(rng.integers(cfg.crops.jpeg_quality[0], cfg.crops.jpeg_quality[1] + 1))
        texts = two_captions(person, view.pose, rng)[:n_captions]
        captions = []
        for text in texts:
            if len(tokenizer.encode(text)) > MAX_TEXT_TOKENS:  # templates are written to stay far below this
                raise ValueError(f"caption longer than the CLIP context: {text!r}")
            if noise_rate > 0:
                captions.append(add_noise(text, person, noise_rate, noise_kinds or {}, rng))
            else:
                captions.append(NoisyCaption(text))
        images.append(
            PersonImage(
                person=person,
                view=view_index,
                data=encode_image(image, image_format, quality),
                extension="png" if image_format == "PNG" else "jpg",
                height=height,
                width=width,
                captions=tuple(captions),
                geometry=geometry,
            )
        )
    return images
