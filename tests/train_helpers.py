"""Shared by the training-job tests: the smoke recipe pointed at a synthetic world, and process helpers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SMOKE = str(REPO / "configs/train/smoke.yaml")


def smoke_overrides(world: Path | str, storage_path: str, name: str, *extra: str) -> list[str]:
    """The smoke recipe on a synthetic world: WebPerson for training, its CUHK-PEDES for evaluation."""
    return [
        f"data.uri={world}/webperson",
        f"eval.benchmarks=[{world}/CUHK-PEDES]",
        f"run.storage_path={storage_path}",
        f"run.name={name}",
        *extra,
    ]


def train_command(overrides: list[str], config: str = SMOKE) -> list[str]:
    return [sys.executable, "-m", "gadms.train", "--config", config, *overrides]


def run_train(overrides: list[str], env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        train_command(overrides), cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )


def wait_for(condition: Callable[[], bool], timeout: float, what: str, poll: float = 1.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(poll)


def kill_group(process: subprocess.Popen) -> None:
    """SIGKILL a process started with start_new_session=True and everything in its group."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(timeout=60)


def train_worker_pids(raylet_pid: int | None = None) -> list[int]:
    """PIDs of live Ray Train worker processes (their process title names the actor class),
    only those of the Ray instance whose raylet is `raylet_pid` when given."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if cmdline.startswith("ray::RayTrainWorker") and raylet_pid in (None, parent):
            pids.append(int(entry.name))
    return sorted(pids)


def raylet_pid() -> int:
    """The raylet of the Ray instance this process started (workers are its children)."""
    import ray._private.worker as ray_worker

    return ray_worker._global_node.all_processes["raylet"][0].process.pid
