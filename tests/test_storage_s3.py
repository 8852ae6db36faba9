"""Storage URIs and the real S3 server: Ray Data writes Parquet to S3 and reads it back identical."""

from __future__ import annotations

import hashlib
from pathlib import Path

import boto3
import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from botocore.exceptions import ClientError

from gadms import storage
from gadms.errors import UserError
from gadms.testing.s3_server import SeaweedS3Server


def make_rows(batch: dict[str, np.ndarray], seed: int) -> dict[str, np.ndarray]:
    """Rows with an id, random binary payload (like image bytes) and text, derived from the id."""
    ids = batch["id"]
    payloads = [np.random.default_rng([seed, int(i)]).bytes(64 + int(i) % 200) for i in ids]
    texts = [f"row {int(i)}: a person in a {('red', 'blue', 'green')[int(i) % 3]} shirt" for i in ids]
    return {"id": ids, "payload": np.array(payloads, dtype=object), "text": np.array(texts, dtype=object)}


def table_digest(table: pa.Table) -> str:
    """Order-independent digest of (id, payload, text) rows: equal digests mean identical rows."""
    table = table.select(["id", "payload", "text"]).sort_by("id")
    digest = hashlib.sha256()
    for row_id, payload, text in zip(*(table.column(c).to_pylist() for c in ("id", "payload", "text"))):
        digest.update(f"{row_id}\0{len(payload)}\0{text}\0".encode() + payload)
    return digest.hexdigest()


def test_resolve_local_and_s3_uris(tmp_path: Path, s3_server: SeaweedS3Server):
    fs, path = storage.resolve(str(tmp_path / "x"))
    assert isinstance(fs, pafs.LocalFileSystem) and path == str(tmp_path / "x")
    fs, path = storage.resolve(f"file://{tmp_path}/y")
    assert isinstance(fs, pafs.LocalFileSystem) and path == str(tmp_path / "y")
    fs, path = storage.resolve("s3://bucket/a/b/")
    assert isinstance(fs, pafs.S3FileSystem) and path == "bucket/a/b"
    with pytest.raises(UserError, match="gs://b/k: unsupported URI scheme 'gs'"):
        storage.resolve("gs://b/k")
    with pytest.raises(UserError, match="no bucket"):
        storage.resolve("s3:///key")


def test_atomic_local_write_leaves_no_partial_file(tmp_path: Path):
    target = tmp_path / "out" / "report.json"
    storage.write_bytes_atomic(str(target), b"first")
    with pytest.raises(TypeError):
        storage.write_bytes_atomic(str(target), "not bytes")  # type: ignore[arg-type]
    assert target.read_bytes() == b"first"  # the failed write did not clobber the old file
    assert sorted(p.name for p in target.parent.iterdir()) == ["report.json"]  # no temp leftovers


def test_s3_bytes_round_trip_and_listing(s3_bucket: str):
    assert storage.list_files(s3_bucket) == []  # every test gets a fresh, empty bucket
    storage.write_bytes_atomic(storage.join(s3_bucket, "a/1.bin"), b"\x00\x01")
    storage.write_bytes_atomic(storage.join(s3_bucket, "a/2.txt"), b"two")
    assert storage.read_bytes(storage.join(s3_bucket, "a/1.bin")) == b"\x00\x01"
    assert storage.list_files(s3_bucket, ".bin") == [f"{s3_bucket}/a/1.bin"]
    assert storage.exists(f"{s3_bucket}/a/2.txt") and not storage.exists(f"{s3_bucket}/a/3.txt")
    with pytest.raises(UserError, match="no such file"):
        storage.read_bytes(f"{s3_bucket}/missing")


def test_s3_server_enforces_credentials(s3_server: SeaweedS3Server, s3_bucket: str):
    bucket = s3_bucket.removeprefix("s3://")
    intruder = boto3.client(
        "s3", endpoint_url=s3_server.endpoint, aws_access_key_id=s3_server.access_key,
        aws_secret_access_key="wrong-secret", region_name="us-east-1",
    )
    with pytest.raises(ClientError) as err:
        intruder.put_object(Bucket=bucket, Key="x", Body=b"x")
    assert err.value.response["Error"]["Code"] in {"SignatureDoesNotMatch", "AccessDenied", "InvalidAccessKeyId"}


@pytest.mark.slow
def test_ray_data_parquet_round_trip_on_s3_is_byte_identical(ray_local, s3_bucket: str):
    import ray

    uri = storage.join(s3_bucket, "table")
    filesystem, path = storage.resolve(uri)
    rows = 300
    ds = ray.data.range(rows, override_num_blocks=3).map_batches(
        make_rows, fn_kwargs={"seed": 7}, batch_format="numpy"
    )
    ds.write_parquet(path, filesystem=filesystem)

    files = storage.list_files(uri, ".parquet")
    assert len(files) == 3
    # Read back twice, independently: with Ray Data, and file by file with plain pyarrow + boto3.
    via_ray = pa.concat_tables(ray.get(ray.data.read_parquet(path, filesystem=filesystem).to_arrow_refs()))
    via_pyarrow = pa.concat_tables(pq.read_table(pa.BufferReader(storage.read_bytes(f))) for f in files)
    expected = pa.Table.from_pydict(make_rows({"id": np.arange(rows)}, 7))
    assert via_ray.num_rows == via_pyarrow.num_rows == rows
    assert table_digest(via_ray) == table_digest(via_pyarrow) == table_digest(expected)
    by_id = {r["id"]: r["payload"] for r in via_ray.select(["id", "payload"]).to_pylist()}
    assert by_id[123] == expected.column("payload")[123].as_py()
