"""Building a caption-template bank the paper's way (METHOD.md section 5, step 4).

1. Rewrite benchmark captions (CUHK-PEDES, ICFG-PEDES, RSTPReid train splits) into templates with
   attribute placeholders: with an instruction-tuned LLM and 3 worked examples in the prompt
   (`rewriter: llm`, a Hugging Face model from a hub name, local directory or s3://), or with the
   deterministic attribute lexicon below (`rewriter: lexicon`, offline, also a check on LLM output).
2. Keep only valid templates (`templates.check_template`), deduplicated.
3. Embed them with an OpenCLIP text encoder, k-means them, and keep per cluster the template
   nearest to the centroid plus `per_cluster_random` random others.
4. With the LLM, synthesise more templates from the kept ones until `target` (paper: 1,000).
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import numpy as np
from pydantic import Field

from gadms import storage
from gadms.backbone import BackboneConfig
from gadms.config import Config
from gadms.errors import UserError
from pipelines.dataset.templates import PLACEHOLDERS, check_template

log = logging.getLogger(__name__)

COLOURS = ("black", "white", "gray", "grey", "red", "blue", "green", "yellow", "pink", "purple", "orange", "brown",
           "beige", "navy", "dark", "light", "khaki", "cream", "maroon", "tan", "blonde", "blond", "silver")  # fmt: skip
LEXICON: tuple[tuple[str, str], ...] = (  # (regex, placeholder), applied in order, each placeholder once
    (r"\b(?:young |old |middle-aged |elderly )?(?:man|woman|boy|girl|male|female|lady|gentleman|person)\b", "gender"),
    (rf"\b(?:(?:{'|'.join(COLOURS)})(?: and (?:{'|'.join(COLOURS)}))? )?(?:long-sleeved |short-sleeved |sleeveless )?"
     r"(?:t-shirt|shirt|blouse|top|sweater|hoodie|tank top|vest|polo)\b", "colored top"),
    (rf"\b(?:(?:{'|'.join(COLOURS)}) )?(?:jacket|coat|cardigan|blazer|parka|windbreaker)\b", "colored outerwear"),
    (rf"\b(?:(?:{'|'.join(COLOURS)}) )?(?:long |short )?(?:pants|trousers|jeans|shorts|skirt|leggings)\b", "colored bottom"),
    (rf"\b(?:(?:{'|'.join(COLOURS)}) )?(?:dress|gown)\b", "colored dress"),
    (rf"\b(?:(?:a pair of )?(?:{'|'.join(COLOURS)}) )?(?:shoes|sneakers|boots|sandals|heels|slippers)\b", "colored footwear"),
    (r"\b(?:short|long|shoulder-length|curly|straight|tied|braided)(?: (?:" + "|".join(COLOURS) + r"))? hair\b", "hairstyle"),
    (rf"\b(?:(?:{'|'.join(COLOURS)}) )?(?:backpack|handbag|shoulder bag|bag|purse|satchel)\b", "bag"),
    (rf"\b(?:(?:{'|'.join(COLOURS)}) )?(?:hat|cap|beanie|helmet|hood)\b", "headwear"),
    (r"\b(?:glasses|sunglasses|spectacles)\b", "glasses"),
    (r"\b(?:walking|standing|running|riding a bike|sitting|talking on (?:a|the) phone)\b", "action"),
    (r"\b(?:an umbrella|a phone|a bottle|a cup|a book|a box)\b", "held object"),
)

WORKED_EXAMPLES = (
    ("A woman with long black hair wears a white blouse, blue jeans and black shoes. She carries a brown handbag.",
     "A [gender] with [hairstyle] wears a [colored top], [colored bottom] and [colored footwear]. The person carries a [bag]."),
    ("The man is walking and wears a gray hoodie, black shorts and white sneakers.",
     "The [gender] is [action] and wears a [colored top], [colored bottom] and [colored footwear]."),
    ("A young girl in a red dress and pink sandals holds an umbrella.",
     "A [gender] in a [colored dress] and [colored footwear] holds [held object]."),
)  # fmt: skip
REWRITE_PROMPT = (
    "Rewrite the pedestrian description into a sentence template: keep its sentence structure, and replace "
    "each attribute with a placeholder in square brackets. Allowed placeholders: {placeholders}. "
    "Use each placeholder at most once. Answer with the template only.\n\n{examples}\nDescription: {caption}\nTemplate:"
)
SYNTH_PROMPT = (
    "Here are sentence templates for describing a pedestrian, with attribute placeholders in square brackets "
    "(allowed: {placeholders}):\n{examples}\nWrite one new template with a different sentence structure. "
    "Answer with the template only.\nTemplate:"
)


class TemplateJobConfig(Config):
    benchmarks: list[str] = Field(default_factory=list)  # benchmark roots (local or s3://)
    split: str = "train"
    max_captions: int = Field(20_000, ge=1)  # captions sampled for rewriting
    output: str | None = None  # the bank (JSONL, local or s3://)
    rewriter: str = Field("llm", pattern="^(llm|lexicon)$")
    llm: str = "Qwen/Qwen2.5-72B-Instruct"  # hub name, local directory or s3://
    llm_max_new_tokens: int = Field(96, ge=8)
    embedder: BackboneConfig = BackboneConfig()  # OpenCLIP text encoder (ViT-B-16 openai by default)
    clusters: int = Field(150, ge=1)
    per_cluster_random: int = Field(5, ge=0)  # paper: centroid-nearest plus 5 random per cluster
    target: int = Field(1000, ge=1)  # paper: 1,000 templates in total
    synth_attempts: int = Field(3000, ge=0)
    seed: int = 0


def lexicon_template(caption: str) -> str:
    """Replace attribute phrases by placeholders (first occurrence of each), keep the structure."""
    text = " ".join(caption.split())
    for pattern, name in LEXICON:
        text = re.sub(pattern, f"[{name}]", text, count=1, flags=re.I)
        text = re.sub(pattern, "", text, flags=re.I) if f"[{name}]" in text else text
    text = re.sub(r"\s+([,.])", r"\1", re.sub(r"\s{2,}", " ", text)).strip()
    text = re.sub(r"\b(a|an) \[", "a [", text, flags=re.I)
    return text[0].upper() + text[1:] if text else text


class LLMRewriter:
    """Instruction-tuned causal LM via transformers (chat template when the tokenizer has one)."""

    def __init__(self, cfg: TemplateJobConfig) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from pipelines.dataset.mllm import resolve_model_source

        source = resolve_model_source(cfg.llm)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(source)
            self.model = AutoModelForCausalLM.from_pretrained(source, dtype="auto").eval()
        except OSError as err:
            raise UserError(f"llm: cannot load {cfg.llm!r} ({' '.join(str(err).split())[:200]})") from None
        self.max_new_tokens = cfg.llm_max_new_tokens
        self.torch = torch

    def __call__(self, prompt: str) -> str:
        if self.tokenizer.chat_template:
            text = self.tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                                      add_generation_prompt=True)  # fmt: skip
        else:
            text = prompt
        inputs = self.tokenizer(text, return_tensors="pt")
        with self.torch.inference_mode():
            out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
        answer = self.tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
        return answer.strip().splitlines()[0].strip() if answer.strip() else ""


def rewrite_prompt(caption: str) -> str:
    examples = "\n".join(f"Description: {c}\nTemplate: {t}\n" for c, t in WORKED_EXAMPLES)
    return REWRITE_PROMPT.format(placeholders=", ".join(f"[{p}]" for p in PLACEHOLDERS), examples=examples, caption=caption)


def embed(texts: list[str], cfg: BackboneConfig, seed: int = 0) -> np.ndarray:
    import torch

    torch.manual_seed(seed)  # only matters for a randomly initialised encoder (tests)
    from gadms.backbone import Backbone
    from gadms.tokenizer import caption_tokenizer

    model = Backbone.from_config(cfg).eval()
    tokenize = caption_tokenizer(cfg.context_length)
    out = []
    with torch.inference_mode():
        for start in range(0, len(texts), 256):
            feats = model.encode_text(tokenize(texts[start : start + 256])).eot
            out.append(torch.nn.functional.normalize(feats, dim=-1).numpy())
    return np.concatenate(out) if out else np.zeros((0, 1), np.float32)


def kmeans(x: np.ndarray, k: int, seed: int, iterations: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """k-means++ initialisation then Lloyd iterations; returns (labels, centroids)."""
    rng = np.random.default_rng(seed)
    k = min(k, len(x))
    centroids = [x[rng.integers(len(x))]]
    for _ in range(1, k):
        d = np.min(((x[:, None, :] - np.asarray(centroids)[None]) ** 2).sum(-1), axis=1)
        centroids.append(x[rng.choice(len(x), p=d / d.sum())] if d.sum() > 0 else x[rng.integers(len(x))])
    c = np.asarray(centroids)
    labels = np.zeros(len(x), dtype=np.int64)
    for _ in range(iterations):
        labels_new = ((x[:, None, :] - c[None]) ** 2).sum(-1).argmin(1)
        if _ and np.array_equal(labels_new, labels):
            break
        labels = labels_new
        for j in range(k):
            if np.any(labels == j):
                c[j] = x[labels == j].mean(0)
    return labels, c


def select(embeddings: np.ndarray, k: int, per_cluster_random: int, seed: int) -> list[tuple[int, int]]:
    """(index, cluster) of the kept templates: each cluster's centroid-nearest plus random others."""
    labels, centroids = kmeans(embeddings, k, seed)
    rng = np.random.default_rng(seed + 1)
    kept = []
    for j in range(len(centroids)):
        members = np.flatnonzero(labels == j)
        if not len(members):
            continue
        nearest = members[np.argmin(((embeddings[members] - centroids[j]) ** 2).sum(-1))]
        others = [m for m in members if m != nearest]
        extra = rng.choice(others, size=min(per_cluster_random, len(others)), replace=False) if others else []
        kept += [(int(nearest), j)] + [(int(m), j) for m in extra]
    return kept


def build_bank(cfg: TemplateJobConfig, captions: list[str], rewriter: Any = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    rng = np.random.default_rng(cfg.seed)
    if len(captions) > cfg.max_captions:
        captions = [captions[i] for i in sorted(rng.choice(len(captions), cfg.max_captions, replace=False))]
    rewrite = rewriter or (LLMRewriter(cfg) if cfg.rewriter == "llm" else None)
    candidates, problems = [], {}
    for caption in captions:
        template = rewrite(rewrite_prompt(caption)) if rewrite else lexicon_template(caption)
        issues = check_template(template)
        if issues:
            problems[issues[0].split(" [")[0]] = problems.get(issues[0].split(" [")[0], 0) + 1
        elif template not in candidates:
            candidates.append(template)
    if not candidates:
        raise UserError(f"no valid template from {len(captions)} captions (rejections: {problems})")
    selected = select(embed(candidates, cfg.embedder, cfg.seed), cfg.clusters, cfg.per_cluster_random, cfg.seed)
    bank = [{"template": candidates[i], "source": "benchmark-rewrite", "cluster": c} for i, c in selected]
    synthesised = attempts = 0
    while rewrite and len(bank) < cfg.target and attempts < cfg.synth_attempts:
        attempts += 1
        shots = rng.choice(len(bank), size=min(5, len(bank)), replace=False)
        prompt = SYNTH_PROMPT.format(placeholders=", ".join(f"[{p}]" for p in PLACEHOLDERS),
                                     examples="\n".join(bank[i]["template"] for i in shots))  # fmt: skip
        template = rewrite(prompt)
        if not check_template(template) and template not in {b["template"] for b in bank}:
            bank.append({"template": template, "source": "llm-synthesised", "cluster": None})
            synthesised += 1
    bank = bank[: cfg.target]
    for i, item in enumerate(bank):
        item["id"] = f"t{i:04d}"
    report = {"captions": len(captions), "valid_rewrites": len(candidates), "rejected_rewrites": problems,
              "selected": len(selected), "synthesised": synthesised, "templates": len(bank)}  # fmt: skip
    return bank, report


def write_bank(uri: str, bank: list[dict[str, Any]]) -> None:
    lines = [json.dumps({"id": b["id"], "template": b["template"], "source": b["source"], "cluster": b["cluster"]})
             for b in bank]  # fmt: skip
    storage.write_bytes_atomic(uri, ("\n".join(lines) + "\n").encode())


def benchmark_captions(roots: list[str], split: str) -> list[str]:
    from gadms.data.benchmarks import read_benchmark

    captions: list[str] = []
    for root in roots:
        captions += list(read_benchmark(root, check_images=False).split(split).captions)
    return captions
