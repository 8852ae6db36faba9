"""What the dataset-job tests share: the synthetic web corpus served locally, the job's command line and
its printed summary. Test modules import it by name (pytest puts tests/ on sys.path)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gadms.synth.config import WebCorpusConfig
from gadms.synth.web_corpus import build_web_corpus, rebase_web_corpus
from gadms.testing.http_server import MisbehavingHTTPServer

REPO = Path(__file__).resolve().parents[1]
SMOKE_MODEL = REPO / "outputs" / "models" / "smoke-vlm"


@contextmanager
def served_corpus(folder: Path) -> Iterator[Path]:
    """The synthetic web corpus (seed 3) in `folder`, its URLs pointing at a misbehaving local server."""
    build_web_corpus(str(folder), WebCorpusConfig(), seed=3)
    with MisbehavingHTTPServer(folder) as server:
        rebase_web_corpus(str(folder), server.base_url)
        yield folder


def job_command(config: str, web: Path, output: str, model: Path, *extra: str, python: str = sys.executable) -> list[str]:
    return [python, "pipelines/build_dataset.py", "--config", config, f"input={web / 'corpus.parquet'}",
            f"output={output}", f"mllm.model={model}", *extra]  # fmt: skip


def job_summary(stdout: str) -> dict:
    """The accounting the job prints last (worker log lines may come before it on stdout)."""
    start = ("\n" + stdout).rindex("\n{\n")
    return json.JSONDecoder().raw_decode(stdout[start:])[0]
