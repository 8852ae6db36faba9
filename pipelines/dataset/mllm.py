"""The MLLM interface shared by the filter and caption stages, and the Hugging Face transformers backend.

A `Request` is one image plus one user prompt, with sampling settings and an optional finite list of
allowed answers (guided decoding). A backend turns requests into `Generation`s; the stages build the
prompts and parse the answers, so both backends (transformers here, vLLM through ray.data.llm in
`vllm_backend.py`) see the same prompts and produce the same parsed outputs.

Model sources: a hub name (the hub cache; HF_HUB_OFFLINE is respected), a local directory, or an
s3:// prefix (copied once to a local cache directory, credentials from the AWS environment).
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from gadms import storage
from gadms.errors import UserError
from pipelines.dataset.config import MLLMConfig

log = logging.getLogger(__name__)
MODEL_CACHE_ENV = "GADMS_MODEL_CACHE"


@dataclass(frozen=True)
class Request:
    key: str
    image: Image.Image
    prompt: str
    seed: int
    max_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    choices: tuple[str, ...] | None = None  # guided decoding: the answer must be one of these


@dataclass(frozen=True)
class Generation:
    text: str
    finish_reason: str | None = None  # "stop" or "length"
    error: str | None = None  # the backend failed on this request


def resolve_model_source(source: str) -> str:
    """A local directory for an s3:// model (copied once into the cache), else `source` unchanged."""
    if not storage.is_s3(source):
        return source
    cache_root = Path(os.environ.get(MODEL_CACHE_ENV, Path.home() / ".cache" / "gadms" / "models"))
    target = cache_root / hashlib.sha256(source.encode()).hexdigest()[:16]
    done = target / ".complete"
    if done.exists():
        return str(target)
    files = storage.list_files(source)
    if not files:
        raise UserError(f"mllm.model: {source}: no files under this prefix")
    prefix = source.rstrip("/") + "/"
    for uri in files:
        local = target / uri[len(prefix) :]
        local.parent.mkdir(parents=True, exist_ok=True)
        tmp = local.with_name(local.name + ".partial")
        tmp.write_bytes(storage.read_bytes(uri))
        tmp.replace(local)
    done.write_text(source)
    return str(target)


def shrink(image: Image.Image, max_side: int) -> Image.Image:
    """Downscale so the longer side is at most `max_side` (aspect kept); smaller images unchanged."""
    if max(image.size) <= max_side:
        return image
    scale = max_side / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.BICUBIC)


def jpeg_bytes(image: Image.Image, quality: int = 92) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


class ChoiceConstraint:
    """A transformers logits processor that only lets generation spell one of `choices`, then stop.

    The choices are tokenised once into a trie; at each step a sequence may continue with the next
    token of any choice whose tokens start with what it generated so far, or with EOS when it has
    completed one. Equivalent to vLLM's `structured_outputs.choice` for these finite answers."""

    def __init__(self, tokenizer: Any, choices: Sequence[str], eos_token_id: int, prompt_length: int) -> None:
        self.sequences = [tuple(tokenizer(c, add_special_tokens=False)["input_ids"]) for c in choices]
        self.eos = eos_token_id
        self.prompt_length = prompt_length

    def allowed(self, generated: tuple[int, ...]) -> list[int]:
        n = len(generated)
        nxt = {s[n] for s in self.sequences if len(s) > n and s[:n] == generated}
        if generated in self.sequences:
            nxt.add(self.eos)
        return sorted(nxt) or [self.eos]

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        mask = torch.full_like(scores, float("-inf"))
        for row in range(input_ids.shape[0]):
            generated = tuple(int(t) for t in input_ids[row, self.prompt_length :])
            mask[row, self.allowed(generated)] = 0.0
        return scores + mask


class TransformersMLLM:
    """Generation with a Hugging Face image-text-to-text model inside one process (a Ray actor)."""

    def __init__(self, cfg: MLLMConfig, num_gpus: float = 0.0) -> None:
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.cfg = cfg
        source = resolve_model_source(cfg.model)
        self.device = cfg.device if cfg.device != "auto" else ("cuda" if num_gpus > 0 and torch.cuda.is_available() else "cpu")
        dtype = {"auto": "auto", "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[cfg.dtype]
        try:
            self.processor = AutoProcessor.from_pretrained(source, revision=cfg.revision)
            self.model = AutoModelForImageTextToText.from_pretrained(source, revision=cfg.revision, dtype=dtype)
        except OSError as err:
            raise UserError(f"mllm.model: cannot load {cfg.model!r} ({' '.join(str(err).split())[:300]})") from None
        self.model.to(self.device).eval()
        self.tokenizer = self.processor.tokenizer
        self.tokenizer.padding_side = "left"
        eos = self.model.generation_config.eos_token_id
        self.eos_token_id = int(eos[0] if isinstance(eos, (list, tuple)) else eos if eos is not None else self.tokenizer.eos_token_id)
        self.pad_token_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.eos_token_id

    def _prompt_text(self, prompt: str) -> str:
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
        return self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def generate(self, requests: Sequence[Request]) -> list[Generation]:
        out: list[Generation] = []
        size = self.cfg.generation_batch_size
        for start in range(0, len(requests), size):
            chunk = list(requests[start : start + size])
            try:
                out.extend(self._generate_chunk(chunk))
            except Exception as err:  # one bad request must not sink the batch: retry one by one
                if len(chunk) == 1:
                    log.warning("generation failed for %s: %s", chunk[0].key, err)
                    out.append(Generation("", None, f"{err.__class__.__name__}: {err}"[:300]))
                else:
                    out.extend(self.generate_one_by_one(chunk))
        return out

    def generate_one_by_one(self, requests: Sequence[Request]) -> list[Generation]:
        out = []
        for request in requests:
            try:
                out.extend(self._generate_chunk([request]))
            except Exception as err:
                log.warning("generation failed for %s: %s", request.key, err)
                out.append(Generation("", None, f"{err.__class__.__name__}: {err}"[:300]))
        return out

    def _generate_chunk(self, chunk: list[Request]) -> list[Generation]:
        import torch
        from transformers import LogitsProcessorList

        first = chunk[0]
        inputs = self.processor(text=[self._prompt_text(r.prompt) for r in chunk], images=[r.image for r in chunk],
                                return_tensors="pt", padding=True).to(self.device)  # fmt: skip
        prompt_length = inputs["input_ids"].shape[1]
        processors = LogitsProcessorList()
        if first.choices:
            processors.append(ChoiceConstraint(self.tokenizer, first.choices, self.eos_token_id, prompt_length))
        sample = first.temperature > 0
        kwargs: dict[str, Any] = {"max_new_tokens": first.max_tokens, "do_sample": sample,
                                  "pad_token_id": self.pad_token_id, "eos_token_id": self.eos_token_id,
                                  "logits_processor": processors}  # fmt: skip
        if sample:
            kwargs.update(temperature=first.temperature, top_p=first.top_p)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        torch.manual_seed(first.seed)  # one seed per generate() call: per request when batch size is 1
        with torch.inference_mode():
            output = self.model.generate(**inputs, **kwargs)
        result = []
        for row in output[:, prompt_length:]:
            tokens = row.tolist()
            ended = self.eos_token_id in tokens
            if ended:
                tokens = tokens[: tokens.index(self.eos_token_id)]
            tokens = [t for t in tokens if t != self.pad_token_id]
            text = self.tokenizer.decode(tokens, skip_special_tokens=True)
            result.append(Generation(text, "stop" if ended else "length"))
        return result
