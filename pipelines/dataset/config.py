"""The typed config of `pipelines/build_dataset.py`: one section per stage, every threshold a field.

Defaults are the paper's values (METHOD.md section 5) where the paper gives one and marked (ours)
where it does not. Profiles live in configs/dataset/ (`paper`: GPU cluster, vLLM, Qwen2.5-VL;
`smoke`: this CPU machine, tiny local models). `input=` and `output=` are usually given on the
command line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from gadms.config import Config

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TEMPLATE_BANK = str(REPO_ROOT / "pipelines" / "templates" / "bank.jsonl")


def _ordered(value: tuple[float, float]) -> tuple[float, float]:
    if value[0] > value[1]:
        raise ValueError(f"minimum {value[0]} is above maximum {value[1]}")
    return value


FloatRange = Annotated[tuple[float, float], AfterValidator(_ordered)]


class StageResources(Config):
    """How a stage runs in Ray Data: switch, batch size, resources per task/actor, parallelism."""

    enabled: bool = True
    batch_size: int = Field(32, ge=1)
    num_cpus: float = Field(1.0, ge=0)
    num_gpus: float = Field(0.0, ge=0)
    concurrency: int = Field(1, ge=1)  # actors (model stages) or tasks in flight (the others)


class ReadConfig(Config):
    """Input tables (Parquet, JSONL, CSV; many files; local or s3://) or plain image folders."""

    format: Literal["auto", "parquet", "jsonl", "csv", "images"] = "auto"
    id_column: str = "id"  # optional; missing ids are derived from the url (or the image bytes)
    url_column: str = "url"
    text_column: str = "text"  # alt text, kept as provenance
    image_column: str = "image"  # rows that already carry the image bytes skip the download
    persons_column: str = "persons"  # precomputed detections (detect.backend: precomputed)
    blocks: int | None = Field(None, ge=1)  # Ray Data override_num_blocks (small inputs want few)
    max_rows: int | None = Field(None, ge=1)  # process only the first rows (trial runs)


class DedupConfig(Config):
    """Exact duplicates: the earliest row in input order wins (see pipelines/README.md)."""

    url: bool = True
    content: bool = True


class DownloadConfig(StageResources):
    batch_size: int = Field(64, ge=1)
    threads: int = Field(16, ge=1)  # concurrent requests per task
    connect_timeout_s: float = Field(5.0, gt=0)
    timeout_s: float = Field(10.0, gt=0)  # per read (no bytes for this long) and per whole request
    retries: int = Field(2, ge=0)  # extra attempts on transient errors (5xx, 429, resets)
    retry_timeouts: bool = False  # a server that timed out once is rarely faster the second time
    backoff_s: float = Field(0.5, ge=0)  # exponential: backoff_s * 2**attempt, capped
    backoff_max_s: float = Field(8.0, ge=0)
    retry_statuses: tuple[int, ...] = (429, 500, 502, 503, 504)
    max_redirects: int = Field(3, ge=0)
    max_body_bytes: int = Field(20 * 1024 * 1024, ge=1024)
    content_types: tuple[str, ...] = ("image/", "application/octet-stream", "binary/octet-stream")
    user_agent: str = "gadms-webperson/0.1 (research dataset builder; honours X-Robots-Tag noai)"
    respect_robots_tag: bool = True  # X-Robots-Tag: noai / noimageai
    allow_loopback: bool = False  # tests switch it on for their local server
    allow_private: bool = False  # RFC 1918, ULA, CGNAT: off, the job often runs inside a cloud VPC


class DecodeConfig(StageResources):
    max_pixels: int = Field(40_000_000, ge=1)  # decompression-bomb limit (declared width x height)
    max_bytes: int = Field(20 * 1024 * 1024, ge=1)  # for rows that bring their own bytes
    time_limit_s: float = Field(5.0, gt=0)
    min_side: int = Field(64, ge=1)  # whole image (ours)
    max_aspect_ratio: float = Field(4.0, ge=1)  # long / short side of the whole image (ours)


class DetectConfig(StageResources):
    backend: Literal["precomputed", "torchvision", "yolo"] = "torchvision"
    min_score: float = Field(0.85, ge=0, le=1)  # keep score > min_score (paper)
    min_short_side: int = Field(90, ge=1)  # paper
    aspect: FloatRange = (0.25, 0.5)  # width / height, paper
    max_people: int = Field(20, ge=1)  # boxes considered per image, best scores first (ours)
    device: str = "auto"  # auto: cuda when a GPU is assigned, else cpu
    weights: str | None = None  # torchvision: state dict file (local or s3://); yolo: detection model
    pose_weights: str | None = None  # yolo: pose model (yolo11x-pose.pt)
    random_init: bool = False  # torchvision only, tests of the code path: no weights at all
    keypoint_threshold: float = 0.0  # a keypoint counts as visible above this score (backend scale)
    default_score: float | None = None  # precomputed: score of annotations that carry none
    min_size: int = Field(800, ge=64)  # torchvision: shorter side the image is resized to


class PoseConfig(StageResources):
    min_keypoints: int = Field(8, ge=0)  # visible COCO keypoints (paper)
    min_hips: int = Field(1, ge=0)  # paper
    min_head: int = Field(2, ge=0)  # nose, eyes, ears (paper)
    crop_margin: float = Field(0.0, ge=0, le=0.5)  # grow the box by this fraction per side (ours)
    crop_format: Literal["jpeg", "png"] = "jpeg"
    crop_quality: int = Field(95, ge=1, le=100)


class MLLMConfig(Config):
    """The multimodal LLM shared by the filter and the caption stages."""

    backend: Literal["transformers", "vllm"] = "vllm"
    model: str = "Qwen/Qwen2.5-VL-7B-Instruct"  # hub name, local directory or s3:// prefix
    revision: str | None = None
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    device: str = "auto"  # transformers: auto, cpu, cuda
    seed: int = 0  # per-request seeds derive from it and the crop key: reruns repeat themselves
    image_max_side: int = Field(448, ge=16)  # crops are downscaled to this before the MLLM (ours)
    # transformers backend
    generation_batch_size: int = Field(8, ge=1)  # prompts per generate() call inside an actor
    # vllm backend (ray.data.llm)
    tensor_parallel_size: int = Field(1, ge=1)
    pipeline_parallel_size: int = Field(1, ge=1)
    max_model_len: int = Field(4096, ge=64)
    engine_kwargs: dict[str, Any] = Field(default_factory=dict)  # extra vLLM engine arguments
    accelerator_type: str | None = None  # e.g. H100; None: any
    max_concurrent_batches: int = Field(4, ge=1)
    # Resources of one engine replica; None: one GPU per tensor/pipeline-parallel worker. The CPU build
    # of vLLM (tests) sets [{CPU: 0.25}] so Ray Data does not wait for GPUs that do not exist.
    placement_bundles: list[dict[str, float]] | None = None
    cpu_stage_num_cpus: float = Field(1.0, gt=0)  # chat template, tokenizer, image prep, detokenizer actors
    # How crops reach vLLM: `direct` (PIL image in the request's multimodal_data, the chat template renders
    # the placeholder) or `prepare_stage` (Ray's PrepareMultimodal stage parses a data URL; Ray 2.60's stage
    # imports vllm.entrypoints.chat_utils, which vLLM 0.32 moved, so it only works with older vLLM).
    vllm_image_input: Literal["direct", "prepare_stage"] = "direct"
    # Tokenise prompts and detokenise answers in Ray Data CPU actors of their own (Ray's default: the GPU
    # actor only generates), or inside the vLLM engine (two fewer actors per processor: small CPU runs).
    tokenizer_stages: bool = True


class FilterConfig(StageResources):
    guided: bool = True  # constrain the answer to the fixed JSON verdicts
    max_tokens: int = Field(64, ge=8)
    temperature: float = Field(0.0, ge=0)


class CaptionConfig(StageResources):
    templates: str = DEFAULT_TEMPLATE_BANK  # JSONL bank (local or s3://)
    max_words: int = Field(60, ge=5)  # the prompt's "< N English words" (ours: the paper gives no N)
    max_tokens: int = Field(160, ge=8)
    temperature: float = Field(0.7, ge=0)
    top_p: float = Field(0.9, gt=0, le=1)


class CaptionCheckConfig(Config):
    enabled: bool = True
    min_words: int = Field(8, ge=1)
    max_words: int = Field(80, ge=1)
    min_english_ratio: float = Field(0.85, ge=0, le=1)  # of letters that are ASCII a-z
    min_alpha_words_ratio: float = Field(0.8, ge=0, le=1)  # of tokens that are plain words
    require_sentence_end: bool = True  # a caption cut off by max_tokens is rejected

    @model_validator(mode="after")
    def _bounds(self) -> CaptionCheckConfig:
        if self.min_words > self.max_words:
            raise ValueError("min_words is above max_words")
        return self


class WriteConfig(StageResources):
    batch_size: int = Field(256, ge=1)  # rows per committed shard
    compression: Literal["zstd", "snappy", "gzip", "none"] = "zstd"
    gallery_size: int = Field(24, ge=0)  # kept crops shown in report.html


class RayConfig(Config):
    address: str | None = None  # None: join a running cluster if there is one, else start one
    num_cpus: int | None = Field(None, ge=1)  # only when starting a local instance
    dashboard: bool = True  # only when starting a local instance (its processes cost CPU on small machines)
    preserve_order: bool = True  # needed for deterministic duplicate resolution (earliest wins)


class DatasetJobConfig(Config):
    input: str | None = None  # file, folder, glob or s3:// prefix (comma-separated for several)
    output: str | None = None  # local folder or s3:// prefix
    read: ReadConfig = ReadConfig()
    dedup: DedupConfig = DedupConfig()
    download: DownloadConfig = DownloadConfig()
    decode: DecodeConfig = DecodeConfig()
    detect: DetectConfig = DetectConfig()
    pose: PoseConfig = PoseConfig()
    mllm: MLLMConfig = MLLMConfig()
    filter: FilterConfig = FilterConfig(batch_size=16)
    caption: CaptionConfig = CaptionConfig(batch_size=16)
    caption_check: CaptionCheckConfig = CaptionCheckConfig()
    write: WriteConfig = WriteConfig()
    ray: RayConfig = RayConfig()

    @field_validator("input", "output")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be empty")
        return value
