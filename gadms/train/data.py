"""Training data as a Ray Data pipeline: rows -> (image tensor, caption tokens, pid) on CPU workers.

Sources:
- WebPerson Parquet (local or s3://, any number of shards): each row has two captions and yields
  two samples; a sample's pid is its caption's (every caption its own identity, as the release)
  or its image's. Pids are stable 63-bit hashes, so they agree across workers and epochs.
- a benchmark's train split (fine-tuning): one sample per caption, pid = the identity label
  (0..K-1) that the ID loss classifies.
Preprocessing (decode, augmentation of METHOD.md section 4, tokenisation) runs in Ray Data tasks,
so train workers only consume ready batches. A row whose image cannot be decoded is not fatal: it
comes through with `valid = False`, and the train loop drops and counts it.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from PIL import Image

from gadms import storage
from gadms.augment import AugmentConfig, train_transform
from gadms.data.benchmarks import BenchmarkSplit, read_benchmark
from gadms.data.webperson import validate_schema, webperson_files
from gadms.errors import UserError
from gadms.tokenizer import caption_tokenizer
from gadms.train.config import DataConfig

log = logging.getLogger(__name__)
WEBPERSON_COLUMNS = ["image", "image_path", "caption1", "caption2"]


@dataclass(frozen=True)
class TrainingSource:
    """What the driver knows about the training data before any worker starts."""

    files: list[str]  # Parquet shards (webperson) or []
    samples: int  # samples per epoch (before dropping undecodable images)
    num_identities: int  # classes of the ID loss (benchmark source) or 0
    split: BenchmarkSplit | None = None


def stable_pid(key: str) -> int:
    """A 63-bit identity from a string key: equal on every worker, in every epoch."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little") >> 1


def describe_source(cfg: DataConfig) -> TrainingSource:
    """Validate the training data and count its samples (Parquet footers only: no data read)."""
    if cfg.source == "benchmark":
        split = read_benchmark(cfg.uri).split("train")
        samples = split.num_captions if cfg.max_rows is None else min(cfg.max_rows, split.num_captions)
        return TrainingSource([], samples, split.num_ids, split)
    files = webperson_files(cfg.uri)
    rows = 0
    for file in files:
        fs, path = storage.resolve(file)
        try:
            with fs.open_input_file(path) as handle:
                metadata = pq.ParquetFile(handle).metadata
        except (OSError, pa.ArrowInvalid) as err:
            raise UserError(f"{file}: not a readable Parquet file ({err})") from None
        validate_schema(metadata.schema.to_arrow_schema(), file)
        rows += metadata.num_rows
    if rows == 0:
        raise UserError(f"{cfg.uri}: the WebPerson data has no rows")
    if cfg.max_rows is not None:
        rows = min(rows, cfg.max_rows)
    return TrainingSource(files, 2 * rows, 0)


def build_dataset(cfg: DataConfig, source: TrainingSource, image_size: tuple[int, int], context_length: int):
    """The Ray Dataset of preprocessed samples (lazy; Ray Train splits it over the workers)."""
    import ray

    if source.split is not None:
        split = source.split
        rows = pa.table({
            "image_path": pa.array([split.image_paths[i] for i in split.caption_images]),
            "caption": pa.array(split.captions),
            "pid": pa.array(_caption_labels(split)),
        })
        if cfg.max_rows is not None:
            rows = rows.slice(0, cfg.max_rows)
        ds = ray.data.from_arrow(rows).map_batches(
            read_image_bytes, batch_format="pyarrow", batch_size=cfg.preprocess_batch_size,
            num_cpus=cfg.preprocess_cpus,
        )
    else:
        filesystem, _ = storage.resolve(source.files[0])
        paths = [storage.resolve(f)[1] for f in source.files]
        # Ray's optimiser pushes the projection down into the Parquet read (other columns are never read).
        ds = ray.data.read_parquet(paths, filesystem=filesystem).select_columns(WEBPERSON_COLUMNS)
        if cfg.max_rows is not None:
            ds = ds.limit(cfg.max_rows)
        ds = ds.map_batches(
            webperson_to_samples, fn_kwargs={"pids": cfg.pids}, batch_format="pyarrow",
            batch_size=cfg.preprocess_batch_size, num_cpus=cfg.preprocess_cpus,
        )
    return ds.map_batches(
        preprocess,
        fn_kwargs={"image_size": tuple(image_size), "augment": cfg.augment.model_dump(), "context_length": context_length},
        batch_format="pyarrow",
        batch_size=cfg.preprocess_batch_size,
        num_cpus=cfg.preprocess_cpus,
    )


def _caption_labels(split: BenchmarkSplit) -> np.ndarray:
    """Per caption, its identity as a class index 0..K-1 (the ID loss's labels)."""
    image_labels = split.pid_labels()
    return image_labels[split.caption_images]


def webperson_to_samples(batch: pa.Table, pids: str) -> pa.Table:
    """Two samples per WebPerson row: (image, caption1) and (image, caption2), with their pids."""
    paths = batch.column("image_path").to_pylist()
    keys1 = [f"{p}#1" if pids == "caption" else p for p in paths]
    keys2 = [f"{p}#2" if pids == "caption" else p for p in paths]
    return pa.table({
        "image": pa.concat_arrays([_binary(batch, "image")] * 2),
        "caption": pa.concat_arrays([batch.column("caption1").combine_chunks(), batch.column("caption2").combine_chunks()]),
        "pid": pa.array([stable_pid(k) for k in keys1 + keys2], pa.int64()),
    })


def _binary(batch: pa.Table, name: str) -> pa.Array:
    return batch.column(name).combine_chunks().cast(pa.binary())


def read_image_bytes(batch: pa.Table) -> pa.Table:
    """Benchmark rows carry paths: fetch the bytes (local or s3://); a missing file is invalid data."""
    images = []
    for uri in batch.column("image_path").to_pylist():
        try:
            images.append(storage.read_bytes(uri))
        except (UserError, OSError):
            images.append(b"")
    return pa.table({"image": pa.array(images, pa.binary()), "caption": batch["caption"], "pid": batch["pid"]})


_RNG_SEEDED = False


def preprocess(batch: pa.Table, image_size: tuple[int, int], augment: dict[str, Any], context_length: int) -> dict[str, np.ndarray]:
    """Decode + augment + tokenise a batch; undecodable images give `valid = False` rows."""
    global _RNG_SEEDED
    if not _RNG_SEEDED:  # worker processes all start from torch's fixed default seed
        torch.manual_seed(int.from_bytes(os.urandom(8), "little"))
        _RNG_SEEDED = True
    transform = train_transform(image_size, AugmentConfig.model_validate(augment))
    height, width = image_size
    images = np.zeros((batch.num_rows, 3, height, width), dtype=np.float32)
    valid = np.zeros(batch.num_rows, dtype=bool)
    for i, data in enumerate(batch.column("image").to_pylist()):
        try:
            with Image.open(io.BytesIO(data)) as image:
                images[i] = transform(image.convert("RGB")).numpy()
            valid[i] = True
        except (OSError, ValueError, Image.DecompressionBombError):
            log.warning("skipping an undecodable image (%d bytes)", len(data or b""))
    tokens = caption_tokenizer(context_length)(batch.column("caption").to_pylist()).numpy()
    return {"image": images, "tokens": tokens, "pid": batch.column("pid").to_numpy(), "valid": valid}
