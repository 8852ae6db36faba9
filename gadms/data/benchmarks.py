"""Readers of the three text-based person retrieval benchmarks, validating what they load.

On-disk formats (see ../shared/REFERENCE.md; images always under `<root>/imgs/`):
- CUHK-PEDES `reid_raw.json`: a list of {split: train|val|test, captions: [str, ...],
  file_path: "CUHK01/0363004.png", processed_tokens, id}.
- ICFG-PEDES `ICFG-PEDES.json`: {id, file_path: "train/..." | "test/...", captions: [str],
  processed_tokens, split: train|test} (no val split).
- RSTPReid `data_captions.json`: {id, img_path, captions: [str, str], split: train|val|test}.

Each split becomes a `BenchmarkSplit`: image paths (full paths or s3:// URIs), the person id of
each image, every caption with its image index and person id. Retrieval metrics match by person
id (REFERENCE.md); training uses `pid_labels()` for the identity loss.

Anything wrong in the files is a `UserError` with one line naming the file and the record index:
not JSON, wrong top-level type, a missing or mistyped field, an empty caption, an unknown split,
the same image listed twice, one person id in two splits (splits are by identity), a missing
image file, an empty or absent split that a caller asks for.
"""

from __future__ import annotations

import json
import logging
import posixpath
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gadms import storage
from gadms.errors import UserError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BenchmarkFormat:
    name: str
    annotation: str  # the JSON file at the dataset root
    path_field: str  # the field with the image path, relative to imgs/
    splits: tuple[str, ...]
    published: dict[str, tuple[int, int, int]]  # split -> (ids, images, captions), REFERENCE.md


FORMATS: dict[str, BenchmarkFormat] = {
    "cuhk-pedes": BenchmarkFormat(
        "CUHK-PEDES", "reid_raw.json", "file_path", ("train", "val", "test"),
        {"train": (11003, 34054, 68126), "val": (1000, 3078, 6158), "test": (1000, 3074, 6156)},
    ),
    "icfg-pedes": BenchmarkFormat(
        "ICFG-PEDES", "ICFG-PEDES.json", "file_path", ("train", "test"),
        {"train": (3102, 34674, 34674), "test": (1000, 19848, 19848)},
    ),
    "rstpreid": BenchmarkFormat(
        "RSTPReid", "data_captions.json", "img_path", ("train", "val", "test"),
        {"train": (3701, 18505, 37010), "val": (200, 1000, 2000), "test": (200, 1000, 2000)},
    ),
}  # fmt: skip
IMAGE_DIR = "imgs"


@dataclass(frozen=True)
class BenchmarkSplit:
    """One split: images with person ids, and captions pointing at their image."""

    benchmark: str
    split: str
    image_paths: tuple[str, ...]
    image_pids: np.ndarray  # int64 [n_images]
    captions: tuple[str, ...]
    caption_images: np.ndarray  # int64 [n_captions], index into image_paths
    caption_pids: np.ndarray  # int64 [n_captions]

    @property
    def num_ids(self) -> int:
        return int(np.unique(self.image_pids).size)

    @property
    def num_images(self) -> int:
        return len(self.image_paths)

    @property
    def num_captions(self) -> int:
        return len(self.captions)

    def pid_labels(self) -> np.ndarray:
        """Contiguous labels 0..num_ids-1 per image (in increasing pid order), for an identity classifier."""
        _, labels = np.unique(self.image_pids, return_inverse=True)
        return labels.astype(np.int64)

    def sizes(self) -> tuple[int, int, int]:
        return self.num_ids, self.num_images, self.num_captions


@dataclass(frozen=True)
class Benchmark:
    name: str
    root: str
    annotation: str  # full path or URI of the annotation file
    splits: dict[str, BenchmarkSplit]

    def split(self, name: str) -> BenchmarkSplit:
        if name not in self.splits:
            have = ", ".join(self.splits) or "none"
            raise UserError(f"{self.annotation}: no {name!r} split in {self.name} (splits present: {have})")
        return self.splits[name]

    def size_report(self) -> list[str]:
        """One line per split: our sizes next to the published ones (synthetic data differ on purpose)."""
        published = _format_of(self.name).published
        lines = []
        for name, split in self.splits.items():
            ids, images, captions = split.sizes()
            ref = published.get(name)
            ref_text = f" (published: {ref[0]} / {ref[1]} / {ref[2]})" if ref else ""
            lines.append(f"{self.name} {name}: {ids} ids / {images} images / {captions} captions{ref_text}")
        return lines


def _format_of(name: str) -> BenchmarkFormat:
    for fmt in FORMATS.values():
        if fmt.name == name:
            return fmt
    raise KeyError(name)


def _normalise_root(root: str | Path) -> str:
    text = str(root).rstrip("/")
    return text if storage.is_s3(text) else str(Path(text).expanduser().resolve())


def detect_benchmark(root: str | Path) -> str:
    """The key in FORMATS of the benchmark stored at `root`, from its annotation file's name."""
    base = _normalise_root(root)
    found = [key for key, fmt in FORMATS.items() if storage.exists(storage.join(base, fmt.annotation))]
    if len(found) != 1:
        expected = ", ".join(f"{f.annotation} ({f.name})" for f in FORMATS.values())
        what = f"several annotation files ({', '.join(found)})" if found else "no benchmark annotation file"
        raise UserError(f"{root}: {what}; expected exactly one of {expected}")
    return found[0]


def read_benchmark(root: str | Path, name: str | None = None, check_images: bool = True) -> Benchmark:
    """Load and validate the benchmark at `root`.

    `name` is a key of FORMATS (cuhk-pedes, icfg-pedes, rstpreid); None detects it from the files.
    `check_images=False` skips the check that every image file exists (one listing of imgs/).
    """
    key = (name or detect_benchmark(root)).lower()
    if key not in FORMATS:
        raise UserError(f"unknown benchmark {name!r} (known: {', '.join(FORMATS)})")
    fmt = FORMATS[key]
    base = _normalise_root(root)
    annotation = storage.join(base, fmt.annotation)
    if not storage.exists(annotation):
        needs = f"{fmt.annotation} and {IMAGE_DIR}/"
        raise UserError(f"{annotation}: not found ({fmt.name} needs {needs} in {root})")
    records = _load_json_list(annotation)
    parsed = [_parse_record(annotation, i, r, fmt) for i, r in enumerate(records)]
    _check_unique(annotation, parsed)
    if check_images:
        _check_images(annotation, base, parsed)
    splits = {s: _build_split(fmt.name, s, base, [p for p in parsed if p[1] == s]) for s in fmt.splits}
    benchmark = Benchmark(fmt.name, base, annotation, {s: v for s, v in splits.items() if v.num_images})
    for line in benchmark.size_report():
        log.info(line)
    return benchmark


def read_cuhk_pedes(root: str | Path, check_images: bool = True) -> Benchmark:
    return read_benchmark(root, "cuhk-pedes", check_images)


def read_icfg_pedes(root: str | Path, check_images: bool = True) -> Benchmark:
    return read_benchmark(root, "icfg-pedes", check_images)


def read_rstpreid(root: str | Path, check_images: bool = True) -> Benchmark:
    return read_benchmark(root, "rstpreid", check_images)


def _load_json_list(uri: str) -> list[Any]:
    try:
        data = json.loads(storage.read_bytes(uri))
    except json.JSONDecodeError as err:
        raise UserError(f"{uri}: not valid JSON (line {err.lineno} column {err.colno}: {err.msg})") from None
    except UnicodeDecodeError:
        raise UserError(f"{uri}: not UTF-8 text") from None
    if not isinstance(data, list):
        raise UserError(f"{uri}: top level must be a list of records, got {type(data).__name__}")
    if not data:
        raise UserError(f"{uri}: holds no records")
    return data


Parsed = tuple[int, str, str, int, list[str]]  # (record index, split, relative image path, pid, captions)


def _parse_record(source: str, index: int, record: Any, fmt: BenchmarkFormat) -> Parsed:
    where = f"{source}: record {index}"
    if not isinstance(record, dict):
        raise UserError(f"{where}: expected an object, got {type(record).__name__}")
    for field in ("id", "split", "captions", fmt.path_field):
        if field not in record:
            raise UserError(f"{where}: missing field {field!r}")
    pid, split, captions, path = record["id"], record["split"], record["captions"], record[fmt.path_field]
    if isinstance(pid, bool) or not isinstance(pid, int) or pid < 0:
        raise UserError(f"{where}: field 'id' must be a non-negative integer, got {pid!r}")
    if not isinstance(split, str):
        raise UserError(f"{where}: field 'split' must be a string, got {type(split).__name__}")
    if split not in fmt.splits:
        raise UserError(f"{where}: unknown split {split!r} (expected {', '.join(fmt.splits)})")
    if not isinstance(path, str) or not path.strip():
        raise UserError(f"{where}: field {fmt.path_field!r} must be a non-empty string, got {path!r}")
    clean = posixpath.normpath(path.replace("\\", "/"))
    if clean.startswith(("/", "../")) or clean == "..":
        raise UserError(f"{where}: field {fmt.path_field!r} must be a path inside {IMAGE_DIR}/, got {path!r}")
    if not isinstance(captions, list) or not captions:
        got = repr(captions)[:60]
        raise UserError(f"{where}: field 'captions' must be a non-empty list of strings, got {got}")
    for j, text in enumerate(captions):
        if not isinstance(text, str):
            raise UserError(f"{where}: caption {j} must be a string, got {type(text).__name__}")
        if not text.strip():
            raise UserError(f"{where}: caption {j} is empty")
    return index, split, clean, pid, captions


def _check_unique(source: str, parsed: list[Parsed]) -> None:
    first_of_path: dict[str, int] = {}
    split_of_pid: dict[int, tuple[str, int]] = {}
    for index, split, path, pid, _ in parsed:
        if path in first_of_path:
            first = first_of_path[path]
            where = f"{source}: record {index}"
            raise UserError(f"{where}: image {path!r} is listed twice (first in record {first})")
        first_of_path[path] = index
        seen = split_of_pid.setdefault(pid, (split, index))
        if seen[0] != split:
            raise UserError(
                f"{source}: record {index}: id {pid} is in split {split!r} but also in {seen[0]!r} "
                f"(record {seen[1]}); splits must not share identities"
            )


def _check_images(source: str, base: str, parsed: list[Parsed]) -> None:
    image_root = storage.join(base, IMAGE_DIR)
    present = set(storage.list_files(image_root))
    missing = [(i, p) for i, _, p, _, _ in parsed if storage.join(image_root, p) not in present]
    if missing:
        index, path = missing[0]
        more = f" ({len(missing) - 1} more records have missing images)" if len(missing) > 1 else ""
        raise UserError(f"{source}: record {index}: image {IMAGE_DIR}/{path} not found{more}")


def _build_split(benchmark: str, split: str, base: str, parsed: list[Parsed]) -> BenchmarkSplit:
    image_paths, image_pids, captions, caption_images, caption_pids = [], [], [], [], []
    for image_index, (_, _, path, pid, texts) in enumerate(parsed):
        image_paths.append(storage.join(base, IMAGE_DIR, path))
        image_pids.append(pid)
        for text in texts:
            captions.append(text)
            caption_images.append(image_index)
            caption_pids.append(pid)
    return BenchmarkSplit(
        benchmark=benchmark,
        split=split,
        image_paths=tuple(image_paths),
        image_pids=np.asarray(image_pids, dtype=np.int64),
        captions=tuple(captions),
        caption_images=np.asarray(caption_images, dtype=np.int64),
        caption_pids=np.asarray(caption_pids, dtype=np.int64),
    )
