"""A local Ray cluster started with `ray start --head` on loopback, for `ray job submit` tests.

`ray stop` would stop every Ray process of the user (including a test session's own `ray.init`
instance), so this runs `ray start --head --block` as a child in its own process group and stops
exactly that group. The cluster uses Ray's token authentication with a random token that lives
only in `env()` (never in a file), which is what `ray job submit` needs to reach it.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from gadms.testing.s3_server import free_port


class LocalRayCluster:
    def __init__(
        self,
        num_cpus: int = 2,
        extra_env: dict[str, str] | None = None,
        startup_timeout_s: float = 90.0,
    ) -> None:
        # Ray's socket paths must stay short (AF_UNIX limit), so the temp dir sits directly in /tmp.
        self.temp_dir = Path(tempfile.mkdtemp(prefix="rayc-", dir="/tmp"))
        self.gcs_port = free_port()
        self.dashboard_port = free_port()
        self.address = f"127.0.0.1:{self.gcs_port}"
        self.dashboard_url = f"http://127.0.0.1:{self.dashboard_port}"
        self._token = secrets.token_hex(16)
        bin_dir = str(Path(sys.executable).parent)
        # Jobs run with this environment's Python: its bin directory leads PATH for the head node.
        self._env = {
            **os.environ,
            **(extra_env or {}),
            "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": self._token,
            "RAY_USAGE_STATS_ENABLED": "0",
        }
        self._env.pop("RAY_ADDRESS", None)
        args = [
            str(Path(bin_dir) / "ray"), "start", "--head", "--block",
            "--node-ip-address=127.0.0.1", f"--port={self.gcs_port}",
            f"--num-cpus={num_cpus}", "--num-gpus=0",
            "--include-dashboard=true", "--dashboard-host=127.0.0.1",
            f"--dashboard-port={self.dashboard_port}", f"--temp-dir={self.temp_dir}",
            f"--ray-client-server-port={free_port()}", f"--dashboard-agent-listen-port={free_port()}",
            "--disable-usage-stats",
        ]
        self.log_path = self.temp_dir / "ray-start.log"
        self._log = open(self.log_path, "wb")
        self._process = subprocess.Popen(
            args, env=self._env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            self._wait_ready(startup_timeout_s)
        except BaseException:
            self.close()
            raise

    def env(self) -> dict[str, str]:
        """Environment for a client process (`ray job submit`, a driver) that targets this cluster."""
        return {
            **self._env,
            "RAY_ADDRESS": self.dashboard_url,
        }

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"`ray start` exited with {self._process.returncode}; see {self.log_path}")
            try:
                request = urllib.request.Request(
                    f"{self.dashboard_url}/api/version", headers={"Authorization": f"Bearer {self._token}"}
                )
                with urllib.request.urlopen(request, timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"Ray dashboard not up after {timeout_s:.0f}s; see {self.log_path}")

    def close(self) -> None:
        """Stop every process of this cluster (and only those): TERM the group, then KILL it."""
        for sig, grace_s in ((signal.SIGTERM, 3), (signal.SIGKILL, 10)):
            try:
                os.killpg(self._process.pid, sig)
            except ProcessLookupError:
                break
            try:
                self._process.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                continue
        self._log.close()
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def __enter__(self) -> LocalRayCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
