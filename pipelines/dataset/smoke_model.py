"""Build the smoke profile's MLLM: a tiny LLaVA trained for seconds on the synthetic person world.

NOT a real model. No model can be downloaded here, and a randomly initialised VLM writes noise
that every caption check rightly rejects, so the smoke profile uses a ~0.3M-parameter LLaVA (CLIP
vision tower + Llama decoder, byte-level BPE tokenizer trained on the prompts and synthetic
captions) trained for a few hundred steps on synthetic crops from `gadms.synth`: for the filter
prompt it learns the fixed JSON verdict (all true for person crops, false for empty backgrounds),
for the caption prompt the synthetic captions of that person. Its captions are therefore
plausible English about colours and clothes, often wrong about the image: enough to exercise
every stage honestly (prompting, guided decoding, parsing, validation, rejection with reasons),
nothing more. Both backends load it: transformers directly, vLLM because the weights are saved
with the key names vLLM's LLaVA loader expects (`vision_tower.vision_model.*`).

    python -m pipelines.dataset.smoke_model --out outputs/models/smoke-vlm
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np

from gadms.cli import run_main
from pipelines.dataset.config import DEFAULT_TEMPLATE_BANK
from pipelines.dataset.prompts import VERDICT_FIELDS, canonical_verdict, caption_prompt, filter_prompt, verdict_choices
from pipelines.dataset.templates import load_bank

log = logging.getLogger(__name__)
SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<image>", "<|user|>", "<|assistant|>", "<|system|>"]
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|' + message['role'] + '|>\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}{% for c in message['content'] %}"
    "{% if c['type'] == 'text' %}{{ c['text'] }}{% else %}<image>\n{% endif %}{% endfor %}{% endif %}</s>\n"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
IMAGE_SIDE, PATCH = 32, 8
MARKER = "gadms-smoke-model.json"


def _samples(n: int, seed: int, templates: list[str], max_words: int):
    """(image, prompt, answer) triples: person crops with verdicts and captions, empty backgrounds."""
    from PIL import Image, ImageDraw

    from gadms.synth.attributes import sample_identity
    from gadms.synth.captions import two_captions
    from gadms.synth.crops import BACKGROUNDS, draw_background, render_crop, sample_crop_size, sample_view
    from gadms.synth.world import stream_rng

    rng = stream_rng(seed, "smoke-model")
    yes = canonical_verdict(dict.fromkeys(VERDICT_FIELDS, True))
    no = canonical_verdict({"single_person": False, "real_person": False, "clearly_visible": False, "good_quality": True})
    out = []
    for i in range(n):
        height, width = sample_crop_size(rng, (96, 256), (0.3, 0.45))
        if i % 8 == 7:  # an empty background: the filter must say no
            image = Image.new("RGB", (width, height))
            draw_background(ImageDraw.Draw(image), rng, BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))], width, height)
            out.append((image, filter_prompt(), no))
            continue
        person = sample_identity(stream_rng(seed, "smoke-model/person", i), i)
        view = sample_view(rng, occlusion_prob=0.0)
        image, _ = render_crop(person, view, height, width, rng)
        if i % 3 == 0:
            out.append((image, filter_prompt(), yes))
        else:
            template = templates[int(rng.integers(len(templates)))]
            out.append((image, caption_prompt(template, max_words), two_captions(person, view.pose, rng)[0]))
    return out


def _tokenizer(texts: list[str], vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())  # fmt: skip
    tok.train_from_iterator(texts, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   model_max_length=2048, extra_special_tokens={"image_token": "<image>"})  # fmt: skip
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_smoke_model(out: str | Path, steps: int = 300, samples: int = 1200, seed: int = 0,
                      templates_uri: str = DEFAULT_TEMPLATE_BANK, max_words: int = 60) -> dict:  # fmt: skip
    import torch
    from safetensors.torch import load_file, save_file
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    start = time.monotonic()
    out = Path(out)
    templates = [t.text for t in load_bank(templates_uri)]
    data = _samples(samples, seed, templates, max_words)
    texts = [filter_prompt(), *verdict_choices(), *(caption_prompt(t, max_words) for t in templates)]
    texts += [answer for _, _, answer in data]
    tokenizer = _tokenizer(texts, vocab_size=1024)
    image_processor = CLIPImageProcessorPil(size={"height": IMAGE_SIDE, "width": IMAGE_SIDE}, do_center_crop=False,
                                            crop_size=None)  # fmt: skip
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=PATCH,
                               vision_feature_select_strategy="default", chat_template=CHAT_TEMPLATE,
                               image_token="<image>", num_additional_image_tokens=1)  # fmt: skip
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    image_tokens = (IMAGE_SIDE // PATCH) ** 2
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=2,
                                       image_size=IMAGE_SIDE, patch_size=PATCH, projection_dim=64),
        text_config=LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=192, num_hidden_layers=2,
                                num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=2048,
                                bos_token_id=ids["<s>"], eos_token_id=ids["</s>"], pad_token_id=ids["<pad>"]),
        image_token_id=ids["<image>"], vision_feature_select_strategy="default", vision_feature_layer=-1,
        image_seq_length=image_tokens,
    )  # fmt: skip
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config)
    model.generation_config.eos_token_id = ids["</s>"]
    model.generation_config.pad_token_id = ids["<pad>"]
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    rng = np.random.default_rng(seed)
    tokenizer.padding_side = "right"
    batch_size = 16
    losses = []
    for step in range(steps):
        pick = rng.choice(len(data), size=batch_size, replace=False)
        batch = [data[i] for i in pick]
        prompts = [processor.apply_chat_template([{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": p}]}],
                                                 add_generation_prompt=True, tokenize=False) for _, p, _ in batch]  # fmt: skip
        full = [p + a + "</s>" for p, (_, _, a) in zip(prompts, batch)]
        enc = processor(text=full, images=[im for im, _, _ in batch], return_tensors="pt", padding=True)
        labels = enc["input_ids"].clone()
        prompt_lens = processor(text=prompts, images=[im for im, _, _ in batch], return_tensors="pt",
                                padding=True)["attention_mask"].sum(1)  # fmt: skip
        for row, prompt_len in enumerate(prompt_lens.tolist()):
            labels[row, :prompt_len] = -100
        labels[enc["attention_mask"] == 0] = -100
        loss = model(**enc, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        for group in optimizer.param_groups:  # linear decay to 10 %
            group["lr"] = 3e-3 * (1 - 0.9 * step / max(1, steps - 1))
        optimizer.step()
        losses.append(loss.item())
        if step % 50 == 0 or step == steps - 1:
            log.info("smoke model step %d/%d loss %.3f", step + 1, steps, float(loss))
    model.eval()
    tokenizer.padding_side = "left"
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    weights = out / "model.safetensors"  # vLLM's LLaVA loader expects the CLIP tower under vision_model
    state = load_file(weights)
    renamed = {("vision_tower.vision_model." + k[len("vision_tower."):] if k.startswith("vision_tower.")
                and not k.startswith("vision_tower.vision_model.") else k): v for k, v in state.items()}  # fmt: skip
    save_file(renamed, weights, metadata={"format": "pt"})
    info = {
        "what": "tiny LLaVA trained locally on synthetic person crops; NOT a real model (see pipelines/README.md)",
        "parameters": sum(p.numel() for p in model.parameters()), "steps": steps, "samples": samples,
        "seed": seed, "final_loss": float(np.mean(losses[-20:])), "build_seconds": round(time.monotonic() - start, 1),
    }  # fmt: skip
    (out / MARKER).write_text(json.dumps(info, indent=1))
    return info


def ensure_smoke_model(out: str | Path, **kwargs) -> Path:
    """Build the model at `out` unless a finished build is already there."""
    out = Path(out)
    if not (out / MARKER).exists():
        build_smoke_model(out, **kwargs)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="build the tiny smoke-profile MLLM (trained on synthetic data)")
    parser.add_argument("--out", default="outputs/models/smoke-vlm")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    info = build_smoke_model(args.out, steps=args.steps, seed=args.seed)
    print(json.dumps(info, indent=1))
    print(f"tiny smoke MLLM written to {args.out} (trained on synthetic data, not a real model)")
    return 0


if __name__ == "__main__":
    run_main(main)
