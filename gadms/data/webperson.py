"""The WebPerson Parquet schema, a sharded atomic writer for it, and a validating reader.

WebPerson-5M/-1M (public) have columns `image` (encoded image bytes), `image_path`, `caption1`,
`caption2`. Our writers may add columns (provenance, person ids, noise ground truth); readers
require the four and ignore the rest. Shards are named `part-00000.parquet`, ... and each is
committed atomically (see `gadms.storage.write_bytes_atomic`), so a reader never sees half a shard.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from gadms import storage
from gadms.errors import UserError

REQUIRED_FIELDS = (
    pa.field("image", pa.binary(), nullable=False),
    pa.field("image_path", pa.string(), nullable=False),
    pa.field("caption1", pa.string(), nullable=False),
    pa.field("caption2", pa.string(), nullable=False),
)
REQUIRED_COLUMNS = tuple(f.name for f in REQUIRED_FIELDS)
SHARD_PREFIX = "part-"
SHARD_SUFFIX = ".parquet"
_COMPATIBLE = {  # what a reader accepts for each required column (other writers use large types)
    "image": (pa.binary(), pa.large_binary()),
    "image_path": (pa.string(), pa.large_string()),
    "caption1": (pa.string(), pa.large_string()),
    "caption2": (pa.string(), pa.large_string()),
}


def webperson_schema(extra: Sequence[pa.Field] = ()) -> pa.Schema:
    """The four WebPerson columns followed by `extra` ones."""
    names = {f.name for f in extra}
    clash = names & set(REQUIRED_COLUMNS)
    if clash:
        raise ValueError(f"extra columns repeat required ones: {sorted(clash)}")
    return pa.schema([*REQUIRED_FIELDS, *extra])


def validate_schema(schema: pa.Schema, source: str) -> None:
    """A one-line UserError naming `source` when a required column is missing or has the wrong type."""
    for name, allowed in _COMPATIBLE.items():
        index = schema.get_field_index(name)
        if index < 0:
            needed = ", ".join(REQUIRED_COLUMNS)
            raise UserError(f"{source}: missing column {name!r} (WebPerson needs {needed})")
        found = schema.field(index).type
        if found not in allowed:
            raise UserError(f"{source}: column {name!r} has type {found}, expected {allowed[0]}")


def shard_name(index: int) -> str:
    return f"{SHARD_PREFIX}{index:05d}{SHARD_SUFFIX}"


class ShardedParquetWriter:
    """Buffers rows and writes `rows_per_shard` of them per Parquet file under `out` (local or s3://).

    The directory must hold no shards yet, unless `overwrite=True`, which first deletes the old
    shards: a rerun that writes fewer shards must not leave stale ones for readers to pick up.
    """

    def __init__(self, out: str, schema: pa.Schema, rows_per_shard: int, overwrite: bool = False) -> None:
        if rows_per_shard < 1:
            raise ValueError("rows_per_shard must be >= 1")
        self.out = str(out).rstrip("/")
        self.schema = schema
        self.rows_per_shard = rows_per_shard
        self.written: list[str] = []
        self.rows_written = 0
        self._rows: list[dict[str, Any]] = []
        files = storage.list_files(self.out, SHARD_SUFFIX)
        existing = [u for u in files if u.rsplit("/", 1)[-1].startswith(SHARD_PREFIX)]
        if existing and not overwrite:
            count = len(existing)
            raise UserError(f"{self.out}: already holds {count} Parquet shards (delete them or overwrite)")
        for uri in existing:
            fs, path = storage.resolve(uri)
            fs.delete_file(path)

    def add(self, row: dict[str, Any]) -> None:
        self._rows.append(row)
        if len(self._rows) >= self.rows_per_shard:
            self._flush()

    def add_all(self, rows: Iterable[dict[str, Any]]) -> None:
        for row in rows:
            self.add(row)

    def _flush(self) -> None:
        if not self._rows:
            return
        table = pa.Table.from_pylist(self._rows, schema=self.schema)
        buffer = io.BytesIO()
        pq.write_table(table, buffer, compression="zstd")
        uri = storage.join(self.out, shard_name(len(self.written)))
        storage.write_bytes_atomic(uri, buffer.getvalue())
        self.written.append(uri)
        self.rows_written += len(self._rows)
        self._rows = []

    def close(self) -> list[str]:
        """Write the last partial shard; returns the URIs of all shards written."""
        self._flush()
        return list(self.written)

    def __enter__(self) -> ShardedParquetWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:  # on an error keep what was committed, but do not commit a partial buffer
            self.close()


def webperson_files(uri: str) -> list[str]:
    """The Parquet files of a WebPerson dataset: `uri` itself if it is a file, else all under it."""
    fs, path = storage.resolve(uri)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.File:
        return [uri]
    if info.type == pafs.FileType.NotFound:
        raise UserError(f"{uri}: no such file or directory")
    files = storage.list_files(uri, SHARD_SUFFIX)
    if not files:
        raise UserError(f"{uri}: no .parquet files found")
    return files


def read_webperson(uri: str, columns: Sequence[str] | None = None) -> pa.Table:
    """All rows of a WebPerson dataset (small datasets and tests; jobs stream with Ray Data)."""
    tables = []
    for file in webperson_files(uri):
        fs, path = storage.resolve(file)
        try:
            schema = pq.read_schema(path, filesystem=fs)
        except (pa.ArrowInvalid, OSError) as err:
            raise UserError(f"{file}: not a readable Parquet file ({' '.join(str(err).split())})") from None
        validate_schema(schema, file)
        tables.append(pq.read_table(path, filesystem=fs, columns=list(columns) if columns else None))
    return pa.concat_tables(tables, promote_options="default")
