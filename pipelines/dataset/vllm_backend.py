"""The vLLM backend: the filter and caption stages as Ray Data LLM processors (`ray.data.llm`).

Each stage is a `vLLMEngineProcessorConfig` processor (multimodal preparation, chat template,
tokenisation, the vLLM engine on GPU actors, detokenisation), fed by a preprocess that builds the
same prompts as the transformers backend (`stages.filter_request`, `stages.caption_requests`) with
the crop as a data URL, and a postprocess that parses answers with the same functions. Guided
decoding: vLLM's structured outputs with `choice` = the canonical verdicts. Per-request seeds make
sampling repeatable. Captioning runs two processors in a row (caption 1, then caption 2, each with
its own template), so every stage streams and no shuffle regroups the captions of a crop.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from pipelines.dataset.config import DatasetJobConfig
from pipelines.dataset.mllm import Generation, jpeg_bytes, resolve_model_source
from pipelines.dataset.records import CROP_SCHEMA, OK
from pipelines.dataset.stages import apply_caption, apply_verdict, caption_requests, crop_image, filter_request
from pipelines.dataset.templates import Template

_KEEP = CROP_SCHEMA.names


def _messages(image_jpeg: bytes, prompt: str, image_input: str) -> list[dict[str, Any]]:
    if image_input == "prepare_stage":  # Ray's multimodal stage fetches and parses the data URL
        url = "data:image/jpeg;base64," + base64.b64encode(image_jpeg).decode()
        part: dict[str, Any] = {"type": "image_url", "image_url": {"url": url}}
    else:  # the chat template renders the image placeholder; the image goes in multimodal_data
        part = {"type": "image"}
    return [{"role": "user", "content": [part, {"type": "text", "text": prompt}]}]


def _request_fields(image: Any, prompt: str, request: Any, image_input: str) -> dict[str, Any]:
    fields = {"messages": _messages(jpeg_bytes(image), prompt, image_input), "sampling_params": _sampling(request),
              "_max_tokens": request.max_tokens}  # fmt: skip
    if image_input == "direct":
        fields["multimodal_data"] = {"image": image}
    return fields


def _sampling(request: Any) -> dict[str, Any]:
    params: dict[str, Any] = {"max_tokens": request.max_tokens, "temperature": request.temperature,
                              "top_p": request.top_p, "seed": request.seed}  # fmt: skip
    if request.choices:
        params["structured_outputs"] = {"choice": list(request.choices)}
    return params


def _row(row: dict[str, Any]) -> dict[str, Any]:
    return {name: row.get(name) for name in _KEEP}


def _generation(row: dict[str, Any]) -> Generation:
    error = row.get("__inference_error__")
    if error:
        return Generation("", None, str(error)[:300])
    finish = "length" if row.get("num_generated_tokens", 0) >= row.get("_max_tokens", 1 << 30) else "stop"
    return Generation(row.get("generated_text") or "", finish)


class FilterPre:
    def __init__(self, cfg: DatasetJobConfig) -> None:
        self.cfg = cfg

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        image = crop_image(row, self.cfg.mllm.image_max_side)
        request = filter_request(row, self.cfg.mllm, self.cfg.filter, image)
        return _request_fields(image, request.prompt, request, self.cfg.mllm.vllm_image_input)


def filter_post(row: dict[str, Any]) -> dict[str, Any]:
    out = _row(row)
    apply_verdict(out, _generation(row))
    return out


class CaptionPre:
    def __init__(self, cfg: DatasetJobConfig, bank: list[Template], number: int) -> None:
        self.cfg, self.bank, self.number = cfg, bank, number

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        image = crop_image(row, self.cfg.mllm.image_max_side)
        row = dict(row)
        request = caption_requests(row, self.bank, self.cfg.mllm, self.cfg.caption, image)[self.number - 1]
        return {**_request_fields(image, request.prompt, request, self.cfg.mllm.vllm_image_input),
                "template1": row["template1"], "template2": row["template2"], "caption_settings": row["caption_settings"]}


class CaptionPost:
    def __init__(self, number: int) -> None:
        self.number = number

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        out = _row(row)
        if out["status"] == OK:
            apply_caption(out, self.number, _generation(row))
        return out


def llm_processor(
    cfg: DatasetJobConfig, batch_size: int, concurrency: int, preprocess: Any, postprocess: Any
) -> Any:
    """A `ray.data.llm` processor: chat template, [tokenizer], vLLM engine, [detokenizer] between pre/post."""
    from ray.data.llm import build_processor, vLLMEngineProcessorConfig

    mllm = cfg.mllm
    engine_kwargs = {
        "tensor_parallel_size": mllm.tensor_parallel_size, "pipeline_parallel_size": mllm.pipeline_parallel_size,
        "max_model_len": mllm.max_model_len, "limit_mm_per_prompt": {"image": 1},
        "dtype": mllm.dtype, "seed": mllm.seed, **mllm.engine_kwargs,  # a null value removes a key
    }  # fmt: skip
    engine_kwargs = {k: v for k, v in engine_kwargs.items() if v is not None}
    if mllm.revision:
        engine_kwargs["revision"] = mllm.revision
    cpu_stage = {"enabled": True, "num_cpus": mllm.cpu_stage_num_cpus, "concurrency": 1}
    prepare = cpu_stage if mllm.vllm_image_input == "prepare_stage" else False
    tokenizer = cpu_stage if mllm.tokenizer_stages else False  # False: the engine (de)tokenises itself
    extra: dict[str, Any] = {}
    if mllm.placement_bundles:
        extra["placement_group_config"] = {"bundles": [dict(b) for b in mllm.placement_bundles]}
    config = vLLMEngineProcessorConfig(
        model_source=resolve_model_source(mllm.model), engine_kwargs=engine_kwargs, batch_size=batch_size,
        concurrency=concurrency, accelerator_type=mllm.accelerator_type,
        max_concurrent_batches=mllm.max_concurrent_batches, prepare_multimodal_stage=prepare,
        chat_template_stage=cpu_stage, tokenize_stage=tokenizer, detokenize_stage=tokenizer,
        log_engine_metrics=False, **extra,
    )  # fmt: skip
    return build_processor(config, preprocess=preprocess, postprocess=postprocess)


def vllm_filter(ds: Any, cfg: DatasetJobConfig) -> Any:
    return llm_processor(cfg, cfg.filter.batch_size, cfg.filter.concurrency, FilterPre(cfg), filter_post)(ds)


def vllm_captions(ds: Any, cfg: DatasetJobConfig, bank: list[Template]) -> Any:
    caption = cfg.caption
    for number in (1, 2):
        processor = llm_processor(cfg, caption.batch_size, caption.concurrency, CaptionPre(cfg, bank, number),
                                  CaptionPost(number))  # fmt: skip
        ds = processor(ds)
    return ds


def describe(row: dict[str, Any]) -> str:
    return json.dumps({k: row.get(k) for k in ("id", "crop", "status")})
