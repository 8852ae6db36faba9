"""Writers of the synthetic datasets in the exact on-disk formats of the real ones.

- CUHK-PEDES: `reid_raw.json` (list of {split, captions, file_path, processed_tokens, id}) and
  `imgs/<source>/<pid><view>.png|jpg`, sources named like the real ones (CUHK01, CUHK03, Market,
  test_query, train_query); 2 captions per image; train/val/test by identity.
- ICFG-PEDES: `ICFG-PEDES.json` ({id, file_path: train/... | test/..., captions: [1],
  processed_tokens, split}) and `imgs/{train,test}/<pid>/<pid>_c<cam>_<view>.jpg`.
- RSTPReid: `data_captions.json` ({id, img_path, captions: [2], split}) and `imgs/<pid>_c<cam>_<view>.jpg`.
- WebPerson: Parquet shards with `image`, `image_path`, `caption1`, `caption2` plus the person id and
  the caption-noise ground truth (see WEBPERSON_EXTRA_FIELDS).
Everything goes through `gadms.storage`, so the output may be a local folder or s3://.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

import pyarrow as pa

from gadms import storage
from gadms.data.webperson import ShardedParquetWriter, webperson_schema
from gadms.synth.attributes import Identity
from gadms.synth.captions import processed_tokens
from gadms.synth.config import SynthConfig
from gadms.synth.noise import NoisyCaption
from gadms.synth.world import PersonImage, WorldIdentities, render_person_images, views_of

CUHK_SOURCES = ("CUHK01", "CUHK03", "Market", "test_query", "train_query")
WEBPERSON_EXTRA_FIELDS = (
    pa.field("person_id", pa.int64(), nullable=False),
    pa.field("caption1_noise_positions", pa.list_(pa.int32()), nullable=False),  # CLIP positions, SOT = 0
    pa.field("caption2_noise_positions", pa.list_(pa.int32()), nullable=False),
    pa.field("caption1_noise", pa.string(), nullable=False),  # JSON list of NoiseSpan dicts
    pa.field("caption2_noise", pa.string(), nullable=False),
)


@dataclass
class DatasetSummary:
    """What a writer produced: where, and ids / images / captions per split."""

    name: str
    path: str
    splits: dict[str, dict[str, int]] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)  # annotation file or shards

    def count(self, split: str, images: list[PersonImage]) -> None:
        entry = self.splits.setdefault(split, {"ids": 0, "images": 0, "captions": 0})
        entry["ids"] += 1 if images else 0
        entry["images"] += len(images)
        entry["captions"] += sum(len(i.captions) for i in images)

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "path": self.path, "splits": self.splits, "files": self.files}


def _json_bytes(records: list[dict[str, object]]) -> bytes:
    return json.dumps(records, ensure_ascii=False).encode("utf-8")


def _write_benchmark(
    cfg: SynthConfig,
    out: str,
    name: str,
    stream: str,
    people: dict[str, list[Identity]],
    images_per_id: tuple[int, int] | int,
    n_captions: int,
    image_format: Callable[[Identity], str],
    make_record: Callable[[str, Identity, PersonImage], tuple[str, dict[str, object]]],
    annotation: str,
) -> DatasetSummary:
    """Render, store images under imgs/, and write the annotation list (records in file order)."""
    summary = DatasetSummary(name, out)
    records = []
    for split, split_people in people.items():
        for person in split_people:
            n_views = views_of(cfg, stream, person, images_per_id)
            images = render_person_images(cfg, stream, person, n_views, n_captions, image_format(person))
            summary.count(split, images)
            for image in images:
                relative, record = make_record(split, person, image)
                storage.write_bytes_atomic(storage.join(out, "imgs", relative), image.data)
                records.append(record)
    annotation_uri = storage.join(out, annotation)
    storage.write_bytes_atomic(annotation_uri, _json_bytes(records))
    summary.files.append(annotation_uri)
    return summary


def _texts(image: PersonImage) -> list[str]:
    return [c.text for c in image.captions]


def _cuhk_source(person: Identity) -> str:
    return CUHK_SOURCES[person.pid % len(CUHK_SOURCES)]


def cuhk_image_format(person: Identity) -> str:
    """CUHK01/CUHK03 crops are PNG files in the real set, the others JPEG."""
    return "PNG" if _cuhk_source(person) in ("CUHK01", "CUHK03") else "JPEG"


def jpeg_format(person: Identity) -> str:
    return "JPEG"


def write_cuhk_pedes(cfg: SynthConfig, out: str, people: dict[str, list[Identity]]) -> DatasetSummary:
    def record(split: str, person: Identity, image: PersonImage) -> tuple[str, dict[str, object]]:
        source = _cuhk_source(person)
        relative = f"{source}/{person.pid:04d}{image.view:03d}.{image.extension}"
        texts = _texts(image)
        return relative, {
            "split": split,
            "captions": texts,
            "file_path": relative,
            "processed_tokens": [processed_tokens(t) for t in texts],
            "id": person.pid,
        }

    return _write_benchmark(cfg, out, "CUHK-PEDES", "cuhk", people, cfg.cuhk.images_per_id, 2,
                            cuhk_image_format, record, "reid_raw.json")  # fmt: skip


def write_icfg_pedes(cfg: SynthConfig, out: str, people: dict[str, list[Identity]]) -> DatasetSummary:
    def record(split: str, person: Identity, image: PersonImage) -> tuple[str, dict[str, object]]:
        camera = 1 + (person.pid * 7 + image.view) % 6
        relative = f"{split}/{person.pid:04d}/{person.pid:04d}_c{camera}_{image.view:04d}.jpg"
        texts = _texts(image)
        return relative, {
            "id": person.pid,
            "file_path": relative,
            "captions": texts,
            "processed_tokens": [processed_tokens(t) for t in texts],
            "split": split,
        }

    return _write_benchmark(cfg, out, "ICFG-PEDES", "icfg", people, cfg.icfg.images_per_id, 1, jpeg_format,
                            record, "ICFG-PEDES.json")  # fmt: skip


def write_rstpreid(cfg: SynthConfig, out: str, people: dict[str, list[Identity]]) -> DatasetSummary:
    def record(split: str, person: Identity, image: PersonImage) -> tuple[str, dict[str, object]]:
        camera = 1 + (person.pid * 5 + image.view) % 15
        relative = f"{person.pid:04d}_c{camera}_{image.view:04d}.jpg"
        return relative, {"id": person.pid, "img_path": relative, "captions": _texts(image), "split": split}

    return _write_benchmark(cfg, out, "RSTPReid", "rstp", people, cfg.rstp.images_per_id, 2, jpeg_format,
                            record, "data_captions.json")  # fmt: skip


def _noise_json(caption: NoisyCaption) -> str:
    return json.dumps([span.to_dict() for span in caption.spans], sort_keys=True)


def webperson_rows(cfg: SynthConfig, person: Identity) -> list[dict[str, object]]:
    images = render_person_images(
        cfg, "webperson", person, views_of(cfg, "webperson", person, cfg.webperson.images_per_id), 2, "JPEG",
        noise_rate=cfg.noise.rate, noise_kinds=cfg.noise.kinds,
    )  # fmt: skip
    rows = []
    for image in images:
        first, second = image.captions
        rows.append({
            "image": image.data,
            "image_path": f"synth/{person.pid:06d}_{image.view:02d}.jpg",
            "caption1": first.text,
            "caption2": second.text,
            "person_id": person.pid,
            "caption1_noise_positions": first.token_positions,
            "caption2_noise_positions": second.token_positions,
            "caption1_noise": _noise_json(first),
            "caption2_noise": _noise_json(second),
        })  # fmt: skip
    return rows


def write_webperson(
    cfg: SynthConfig, out: str, people: list[Identity], overwrite: bool = False
) -> DatasetSummary:
    summary = DatasetSummary("WebPerson", out)
    schema = webperson_schema(WEBPERSON_EXTRA_FIELDS)
    with ShardedParquetWriter(out, schema, cfg.webperson.rows_per_shard, overwrite=overwrite) as writer:
        for person in people:
            rows = webperson_rows(cfg, person)
            writer.add_all(rows)
            entry = summary.splits.setdefault("train", {"ids": 0, "images": 0, "captions": 0})
            entry["ids"] += 1
            entry["images"] += len(rows)
            entry["captions"] += 2 * len(rows)
    summary.files.extend(writer.written)
    return summary


def benchmark_writers(
    cfg: SynthConfig, out: str, world: WorldIdentities
) -> list[tuple[str, Callable[[], DatasetSummary]]]:
    """(folder name, write) for each enabled benchmark; `write()` renders and writes it under `out`."""
    writers: list[tuple[str, Callable[[], DatasetSummary]]] = []
    if cfg.cuhk.enabled:
        cuhk_root = storage.join(out, "CUHK-PEDES")
        writers.append(("CUHK-PEDES", lambda: write_cuhk_pedes(cfg, cuhk_root, world.cuhk)))
    if cfg.icfg.enabled:
        icfg_root = storage.join(out, "ICFG-PEDES")
        writers.append(("ICFG-PEDES", lambda: write_icfg_pedes(cfg, icfg_root, world.icfg)))
    if cfg.rstp.enabled:
        rstp_root = storage.join(out, "RSTPReid")
        writers.append(("RSTPReid", lambda: write_rstpreid(cfg, rstp_root, world.rstp)))
    return writers
