"""Shared fixtures: one local Ray instance per test run, a real S3 server, a misbehaving web server.

- `s3_server` (session): SeaweedFS on 127.0.0.1; its AWS variables are exported for the whole run,
  before Ray starts, so Ray workers inherit them exactly as on a cluster node.
- `s3_bucket`: a fresh, empty bucket per test, as an `s3://bucket` URI.
- `ray_local` (session): `ray.init(num_cpus=2, include_dashboard=False)`, usage stats off.
- `http_server`: a `MisbehavingHTTPServer` over the test's own folder (`http_root`).
- `ray_cluster` (session, marker `cluster`): `ray start --head` on loopback for `ray job submit`.
Every server binds loopback on free ports and is torn down even when a test fails.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# Nothing is downloaded at test time: any hub access is a bug and must fail, not hang.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Ray Train's controller polls its workers every 2 s by default; each of the suite's dozen training runs
# waits for a poll to start and to finish. Measured on 2 cores: a trivial TorchTrainer.fit takes 16 s at
# the default, 13 s at 0.2 s. Inherited by the jobs the tests start as subprocesses.
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5")

from gadms.testing.http_server import MisbehavingHTTPServer  # noqa: E402
from gadms.testing.ray_cluster import LocalRayCluster  # noqa: E402
from gadms.testing.s3_server import SeaweedS3Server  # noqa: E402


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3Server]:
    server = SeaweedS3Server(tmp_path_factory.mktemp("seaweedfs"))
    saved = {k: os.environ.get(k) for k in server.env()}
    os.environ.update(server.env())
    try:
        yield server
    finally:
        server.close()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture
def s3_bucket(s3_server: SeaweedS3Server) -> str:
    return f"s3://{s3_server.create_bucket()}"


@pytest.fixture(scope="session")
def ray_local(s3_server: SeaweedS3Server) -> Iterator[object]:
    import ray

    # Ray workers unpickle functions defined in test modules by module name: let them import them.
    tests_dir = str(Path(__file__).parent)
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (tests_dir, os.environ.get("PYTHONPATH")) if p)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=True, configure_logging=False)
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.fixture
def http_root(tmp_path: Path) -> Path:
    root = tmp_path / "web"
    root.mkdir()
    return root


@pytest.fixture
def http_server(http_root: Path) -> Iterator[MisbehavingHTTPServer]:
    with MisbehavingHTTPServer(http_root) as server:
        yield server


# Per module, not per session: an idle `ray start --head` cluster that has run jobs keeps using CPU that the
# heavy tests after it (demo, dataset and training jobs, sweeps) need on a 2-core machine.
@pytest.fixture(scope="module")
def ray_cluster(s3_server: SeaweedS3Server) -> Iterator[LocalRayCluster]:
    with LocalRayCluster(num_cpus=2) as cluster:
        yield cluster
