"""Process helpers for the tests that kill things: a driver with its whole local Ray, a Ray Train worker."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple


def wait_for(condition: Callable[[], bool], timeout: float, what: str, poll: float = 1.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(poll)


class Process(NamedTuple):
    pid: int
    parent: int
    group: int
    session: int
    cmdline: str


def live_processes() -> list[Process]:
    """Every process on the machine that is not a zombie, from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
        except (OSError, IndexError):
            continue
        if fields[0] != "Z":
            found.append(Process(int(entry.name), int(fields[1]), int(fields[2]), int(fields[3]), cmdline))
    return found


def kill_session(process: subprocess.Popen, timeout: float = 60) -> None:
    """SIGKILL a process started with start_new_session=True and every process of its session, and wait
    until they are gone. Its process group alone is not enough: Ray puts each worker in a group of its
    own, and workers of a killed local Ray go on (importing torch, retrying their raylet) for tens of
    seconds, stealing the CPU from whatever the test runs next."""
    deadline = time.monotonic() + timeout
    while members := [p.pid for p in live_processes() if p.session == process.pid]:
        for pid in members:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if time.monotonic() > deadline:
            raise AssertionError(f"processes {members} of session {process.pid} survived SIGKILL")
        time.sleep(0.2)
    process.wait(timeout=timeout)


def train_worker_pids(raylet_pid: int | None = None) -> list[int]:
    """PIDs of live Ray Train worker processes (their process title names the actor class),
    only those of the Ray instance whose raylet is `raylet_pid` when given."""
    return sorted(p.pid for p in live_processes()
                  if p.cmdline.startswith("ray::RayTrainWorker") and raylet_pid in (None, p.parent))  # fmt: skip


def raylet_pid() -> int:
    """The raylet of the Ray instance this process started (workers are its children)."""
    import ray._private.worker as ray_worker

    return ray_worker._global_node.all_processes["raylet"][0].process.pid
