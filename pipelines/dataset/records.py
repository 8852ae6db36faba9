"""Row layouts between stages, the output schemas, and the commit protocol (atomic, idempotent).

Between stages a batch is a list of dicts with the columns of `ROW_SCHEMA` (one per input row, up to
the pose stage) or `CROP_SCHEMA` (one per person crop, or one per row rejected before crops exist).
A rejected row or crop keeps flowing, with its big columns dropped, until the next commit point.

Commit (`commit_records`): a batch of finished records is written as
  rejects/part-<key>.parquet   (id, url, stage, reason, detail, crop, ...)   when it has rejects
  data/part-<key>.parquet      (WebPerson columns + provenance)               when it has kept crops
  _commits/<key>.json          (file names and counts)                        always, LAST
where <key> is a hash of the batch's record keys, so a retried task rewrites the same names (no
duplicates). Each file is written whole under a temporary name that no reader matches (not
*.parquet) and renamed (local), or PUT in one request / one completed multipart upload (S3). A file
without its marker is an orphan of a killed task: the next run deletes it and redoes its rows.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections import Counter
from collections.abc import Iterable
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from gadms import storage
from gadms.data.webperson import SHARD_PREFIX, SHARD_SUFFIX, webperson_schema

DATA_DIR, REJECTS_DIR, COMMITS_DIR = "data", "rejects", "_commits"
TMP_MARK = storage.TMP_PREFIX  # a killed write leaves this behind
OK, REJECTED = "ok", "rejected"

_COMMON = [
    ("id", pa.string()), ("url", pa.string()), ("text", pa.string()), ("source_file", pa.string()),
    ("url_sha", pa.string()), ("content_sha", pa.string()), ("status", pa.string()), ("stage", pa.string()),
    ("reason", pa.string()), ("detail", pa.string()), ("duplicate_of", pa.string()), ("busy", pa.string()),
]  # fmt: skip
ROW_SCHEMA = pa.schema([
    *_COMMON, ("body", pa.binary()), ("persons", pa.string()), ("width", pa.int32()), ("height", pa.int32()),
    ("pixels", pa.binary()), ("detections", pa.string()), ("boxes_seen", pa.int32()), ("boxes_kept", pa.int32()),
])  # fmt: skip
CROP_SCHEMA = pa.schema([
    *_COMMON, ("width", pa.int32()), ("height", pa.int32()), ("crop", pa.int32()), ("num_crops", pa.int32()),
    ("box", pa.list_(pa.float32())), ("det_score", pa.float32()), ("keypoints_visible", pa.int32()),
    ("keypoints", pa.list_(pa.float32())), ("image", pa.binary()), ("verdict", pa.string()),
    ("filter_raw", pa.string()), ("template1", pa.string()), ("template2", pa.string()),
    ("caption1", pa.string()), ("caption2", pa.string()), ("finish1", pa.string()), ("finish2", pa.string()),
    ("caption_settings", pa.string()),
])  # fmt: skip
DATA_SCHEMA = webperson_schema([
    pa.field("source_id", pa.string()), pa.field("source_url", pa.string()), pa.field("source_text", pa.string()),
    pa.field("source_file", pa.string()), pa.field("crop_index", pa.int32()), pa.field("num_crops", pa.int32()),
    pa.field("image_width", pa.int32()), pa.field("image_height", pa.int32()),
    pa.field("box", pa.list_(pa.float32())), pa.field("det_score", pa.float32()),
    pa.field("keypoints_visible", pa.int32()), pa.field("keypoints", pa.list_(pa.float32())),
    pa.field("filter_verdict", pa.string()), pa.field("template1", pa.string()), pa.field("template2", pa.string()),
    pa.field("detector", pa.string()), pa.field("mllm_model", pa.string()), pa.field("caption_settings", pa.string()),
    pa.field("url_sha", pa.string()), pa.field("content_sha", pa.string()),
])  # fmt: skip
REJECTS_SCHEMA = pa.schema([
    ("id", pa.string()), ("url", pa.string()), ("stage", pa.string()), ("reason", pa.string()),
    ("detail", pa.string()), ("crop", pa.int32()), ("num_crops", pa.int32()), ("duplicate_of", pa.string()),
    ("url_sha", pa.string()), ("content_sha", pa.string()), ("source_file", pa.string()),
])  # fmt: skip
BIG_COLUMNS = ("body", "pixels", "image", "detections", "persons")


def url_digest(url: str) -> str:
    return hashlib.blake2b(url.encode(), digest_size=12).hexdigest()


def table_rows(table: pa.Table) -> list[dict[str, Any]]:
    return table.to_pylist()


def rows_table(rows: list[dict[str, Any]], schema: pa.Schema) -> pa.Table:
    return pa.Table.from_pylist([{k: r.get(k) for k in schema.names} for r in rows], schema=schema)


def reject(row: dict[str, Any], stage: str, reason: str, detail: str = "", duplicate_of: str | None = None) -> None:
    """Mark `row` rejected in place and drop its big columns (they are not needed any more)."""
    row.update(status=REJECTED, stage=str(stage), reason=str(reason), detail=detail[:500], duplicate_of=duplicate_of)
    for column in BIG_COLUMNS:
        if column in row:
            row[column] = None


def add_busy(rows: list[dict[str, Any]], stage: str, seconds: float) -> None:
    """Spread a batch's busy seconds over its rows (summed per stage at commit time)."""
    if not rows:
        return
    share = seconds / len(rows)
    for row in rows:
        busy = json.loads(row["busy"]) if row.get("busy") else {}
        busy[stage] = busy.get(stage, 0.0) + share
        row["busy"] = json.dumps(busy)


def record_key(row: dict[str, Any]) -> str:
    return f"{row['id']}#{'' if row.get('crop') is None else row['crop']}"


def batch_key(kind: str, rows: Iterable[dict[str, Any]]) -> str:
    digest = hashlib.blake2b(kind.encode(), digest_size=10)
    for key in sorted(record_key(r) for r in rows):
        digest.update(key.encode() + b"\n")
    return digest.hexdigest()


def _parquet_bytes(table: pa.Table, compression: str) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression=None if compression == "none" else compression)
    return buffer.getvalue()


def data_record(row: dict[str, Any], detector: str, model: str) -> dict[str, Any]:
    return {
        "image": row["image"], "image_path": f"{row['id']}_{row['crop']}.jpg", "caption1": row.get("caption1") or "",
        "caption2": row.get("caption2") or "", "source_id": row["id"], "source_url": row["url"],
        "source_text": row.get("text"), "source_file": row.get("source_file"), "crop_index": row["crop"],
        "num_crops": row["num_crops"], "image_width": row.get("width"), "image_height": row.get("height"),
        "box": row.get("box"), "det_score": row.get("det_score"), "keypoints_visible": row.get("keypoints_visible"),
        "keypoints": row.get("keypoints"), "filter_verdict": row.get("verdict"), "template1": row.get("template1"),
        "template2": row.get("template2"), "detector": detector, "mllm_model": model,
        "caption_settings": row.get("caption_settings"), "url_sha": row.get("url_sha"), "content_sha": row.get("content_sha"),
    }  # fmt: skip


def reject_record(row: dict[str, Any]) -> dict[str, Any]:
    return {name: row.get(name) for name in REJECTS_SCHEMA.names}


def commit_records(output: str, kind: str, rows: list[dict[str, Any]], detector: str, model: str,
                   compression: str = "zstd") -> dict[str, Any]:  # fmt: skip
    """Commit finished records (status ok -> data, rejected -> rejects); returns the marker."""
    key = batch_key(kind, rows)
    kept = [r for r in rows if r["status"] == OK]
    rejected = [r for r in rows if r["status"] == REJECTED]
    files: dict[str, str | None] = {"data": None, "rejects": None}
    if rejected:
        name = f"{REJECTS_DIR}/{SHARD_PREFIX}{key}{SHARD_SUFFIX}"
        table = pa.Table.from_pylist([reject_record(r) for r in rejected], schema=REJECTS_SCHEMA)
        storage.write_bytes_atomic(storage.join(output, name), _parquet_bytes(table, compression))
        files["rejects"] = name
    if kept:
        name = f"{DATA_DIR}/{SHARD_PREFIX}{key}{SHARD_SUFFIX}"
        table = pa.Table.from_pylist([data_record(r, detector, model) for r in kept], schema=DATA_SCHEMA)
        storage.write_bytes_atomic(storage.join(output, name), _parquet_bytes(table, compression))
        files["data"] = name
    busy: Counter[str] = Counter()
    for row in rows:
        for stage, seconds in (json.loads(row["busy"]) if row.get("busy") else {}).items():
            busy[stage] += seconds
    marker = {
        "key": key, "kind": kind, "files": files, "kept": len(kept), "rejected": len(rejected),
        "reasons": dict(Counter(f"{r['stage']}/{r['reason']}" for r in rejected)), "busy_s": dict(busy),
    }  # fmt: skip
    storage.write_bytes_atomic(storage.join(output, f"{COMMITS_DIR}/{key}.json"), json.dumps(marker).encode())
    return marker


def read_markers(output: str) -> list[dict[str, Any]]:
    return [json.loads(storage.read_bytes(uri)) for uri in storage.list_files(storage.join(output, COMMITS_DIR), ".json")]


def clean_orphans(output: str, markers: list[dict[str, Any]]) -> list[str]:
    """Delete data/rejects files that no marker names and leftover temporary files; returns them."""
    named = {f for m in markers for f in m["files"].values() if f}
    removed = []
    for folder in (DATA_DIR, REJECTS_DIR, COMMITS_DIR):
        base = storage.join(output, folder)
        for uri in storage.list_files(base):
            name = f"{folder}/{uri.rsplit('/', 1)[-1]}"
            orphan = TMP_MARK in name or (folder != COMMITS_DIR and name.endswith(SHARD_SUFFIX) and name not in named)
            if orphan:
                fs, path = storage.resolve(uri)
                fs.delete_file(path)
                removed.append(uri)
    return removed


def committed_files(output: str, markers: list[dict[str, Any]], which: str) -> list[str]:
    return sorted(storage.join(output, m["files"][which]) for m in markers if m["files"].get(which))


def read_committed(output: str, markers: list[dict[str, Any]], which: str, columns: list[str]) -> pa.Table:
    """Selected columns of all committed data or rejects files (one table; empty when none)."""
    schema = DATA_SCHEMA if which == "data" else REJECTS_SCHEMA
    tables = []
    for uri in committed_files(output, markers, which):
        fs, path = storage.resolve(uri)
        tables.append(pq.read_table(path, filesystem=fs, columns=columns))
    if not tables:
        return pa.table({c: pa.array([], type=schema.field(c).type) for c in columns})
    return pa.concat_tables(tables)
