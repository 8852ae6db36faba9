"""Local paths and `s3://` URIs behind one pyarrow filesystem interface (what Ray Data takes).

S3 settings come only from the standard AWS environment: credentials from AWS_ACCESS_KEY_ID /
AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN or an instance role (never passed in code, so a pickled
filesystem sent to Ray workers carries none), region from AWS_REGION / AWS_DEFAULT_REGION, and an
S3-compatible server (SeaweedFS, MinIO, ...) from AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL, the same
variables boto3 and s3fs read.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from urllib.parse import urlparse

import pyarrow.fs as pafs

from gadms.errors import UserError

S3_SCHEMES = ("s3", "s3a")


def is_s3(uri: str | os.PathLike[str]) -> bool:
    return urlparse(str(uri)).scheme in S3_SCHEMES


def s3_endpoint() -> str | None:
    """The S3 endpoint override from the standard AWS variables, or None for AWS itself."""
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


def s3_filesystem() -> pafs.S3FileSystem:
    """A pyarrow S3 filesystem configured from the environment (see the module docstring)."""
    endpoint = s3_endpoint()
    kwargs: dict[str, object] = {
        "region": os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    }
    if endpoint:
        parsed = urlparse(endpoint)
        kwargs["endpoint_override"] = parsed.netloc or parsed.path
        kwargs["scheme"] = parsed.scheme or "https"
    return pafs.S3FileSystem(**kwargs)


def resolve(uri: str | os.PathLike[str]) -> tuple[pafs.FileSystem, str]:
    """Turn `s3://bucket/key` or a local path (or `file://` URI) into (filesystem, path in it)."""
    text = str(uri)
    parsed = urlparse(text)
    if parsed.scheme in S3_SCHEMES:
        if not parsed.netloc:
            raise UserError(f"{text}: S3 URI has no bucket (expected s3://bucket/key)")
        return s3_filesystem(), f"{parsed.netloc}/{parsed.path.lstrip('/')}".rstrip("/")
    if parsed.scheme == "file":
        return pafs.LocalFileSystem(), str(Path(parsed.path).resolve())
    if parsed.scheme and len(parsed.scheme) > 1:  # one letter is a Windows drive, not a scheme
        raise UserError(f"{text}: unsupported URI scheme {parsed.scheme!r} (use a local path or s3://)")
    return pafs.LocalFileSystem(), str(Path(text).expanduser().resolve())


def join(uri: str, *parts: str) -> str:
    """Join path parts onto a local path or an s3:// URI."""
    return "/".join([str(uri).rstrip("/"), *(p.strip("/") for p in parts)])


def exists(uri: str) -> bool:
    fs, path = resolve(uri)
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def read_bytes(uri: str) -> bytes:
    fs, path = resolve(uri)
    try:
        with fs.open_input_stream(path) as stream:
            return stream.read()
    except FileNotFoundError:
        raise UserError(f"{uri}: no such file") from None


TMP_PREFIX = ".tmp-"  # temporary files of write_bytes_atomic: hidden, and never ending in a data suffix


def write_bytes_atomic(uri: str, data: bytes) -> None:
    """Write a whole file so that readers see either nothing or all of it, never a partial file.

    Locally: write a temporary sibling, then rename over the target. On S3 a single PUT (or a
    completed multipart upload) is already all-or-nothing, so the object is written directly.
    """
    fs, path = resolve(uri)
    parent = path.rsplit("/", 1)[0]
    if isinstance(fs, pafs.LocalFileSystem):
        fs.create_dir(parent, recursive=True)
        tmp = f"{parent}/{TMP_PREFIX}{uuid.uuid4().hex}-{path.rsplit('/', 1)[-1]}.tmp"  # no reader's suffix
        try:
            with fs.open_output_stream(tmp) as out:
                out.write(data)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    else:
        with fs.open_output_stream(path) as out:
            out.write(data)


def list_files(uri: str, suffix: str = "") -> list[str]:
    """All files under a directory or prefix (recursive), as URIs of the same kind, sorted."""
    fs, path = resolve(uri)
    infos = fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
    found = sorted(i.path for i in infos if i.type == pafs.FileType.File and i.path.endswith(suffix))
    return [f"s3://{p}" for p in found] if is_s3(uri) else found
