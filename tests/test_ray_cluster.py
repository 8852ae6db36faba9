"""`ray start --head` on loopback: `ray job submit` works against it, and stopping it stops only it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from process_helpers import live_processes

from gadms import storage
from gadms.testing.ray_cluster import LocalRayCluster

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

RAY = str(Path(sys.executable).parent / "ray")


def test_ray_job_submit_runs_a_job_that_writes_to_s3(ray_cluster: LocalRayCluster, s3_bucket: str, tmp_path: Path):
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    (job_dir / "write_table.py").write_text(textwrap.dedent("""
        import sys
        import ray
        from gadms import storage

        ray.init()
        uri = sys.argv[1]
        fs, path = storage.resolve(uri)
        ray.data.range(50, override_num_blocks=2).write_parquet(path, filesystem=fs)
        print("rows", ray.data.read_parquet(path, filesystem=fs).count())
    """))
    uri = storage.join(s3_bucket, "from-job")
    result = subprocess.run(
        [RAY, "job", "submit", "--working-dir", str(job_dir), "--", "python", "write_table.py", uri],
        env=ray_cluster.env(), capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "rows 50" in result.stdout
    assert len(storage.list_files(uri, ".parquet")) == 2  # the job's output really is on S3


def test_stopping_a_cluster_stops_its_processes_and_nothing_else(ray_local):
    import ray

    cluster = LocalRayCluster(num_cpus=1)
    group = cluster._process.pid
    assert _processes_in_group(group), "the cluster should have running processes"
    cluster.close()
    assert _processes_in_group(group) == [], "every process of the cluster is gone"
    assert not Path(cluster.temp_dir).exists()
    # The test session's own Ray instance was not touched (`ray stop` would have killed it).
    assert ray.get(ray.remote(lambda: 41 + 1).remote(), timeout=60) == 42


def _processes_in_group(pgid: int) -> list[int]:
    """Live (non-zombie) processes whose process group is `pgid`."""
    return [p.pid for p in live_processes() if p.group == pgid]


