"""The caption template bank: loading, validation, and the per-crop template draw.

A bank is JSONL, one template per line: {"id": "t0001", "template": "A [gender] in [colored top] ..."}
(optional "source": where it came from). Placeholders are square-bracketed attribute names from
`PLACEHOLDERS`. The draw is a pure function of (seed, crop key, caption number), so reruns and
resumed runs prompt with the same templates, and the two captions of a crop use two different ones.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass

from gadms import storage
from gadms.errors import UserError

PLACEHOLDERS = (
    "gender", "age group", "body build", "hairstyle", "hair color", "headwear", "glasses",
    "colored top", "top type", "colored outerwear", "colored bottom", "bottom type", "colored dress",
    "footwear", "colored footwear", "bag", "accessory", "held object", "action", "posture", "direction",
)  # fmt: skip
PLACEHOLDER = re.compile(r"\[([a-z][a-z ]*[a-z])\]")


@dataclass(frozen=True)
class Template:
    id: str
    text: str

    @property
    def placeholders(self) -> list[str]:
        return PLACEHOLDER.findall(self.text)


def check_template(text: str, min_placeholders: int = 2) -> list[str]:
    """Problems with one template (empty list when it is fine)."""
    problems = []
    found = PLACEHOLDER.findall(text)
    unknown = sorted(set(found) - set(PLACEHOLDERS))
    if unknown:
        problems.append(f"unknown placeholders {unknown}")
    if len(found) < min_placeholders:
        problems.append(f"{len(found)} placeholders, need >= {min_placeholders}")
    if len(found) != len(set(found)):
        problems.append("a placeholder repeats")
    stray = re.sub(PLACEHOLDER, "", text)
    if "[" in stray or "]" in stray:
        problems.append("unbalanced or malformed brackets")
    if not text.strip() or text.strip()[-1] not in ".!?":
        problems.append("does not end a sentence")
    return problems


def load_bank(uri: str) -> list[Template]:
    """All templates of a bank; a UserError names the line of the first bad one."""
    try:
        lines = storage.read_bytes(uri).decode("utf-8").splitlines()
    except UnicodeDecodeError:
        raise UserError(f"{uri}: template bank is not UTF-8") from None
    bank, seen = [], set()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            template = Template(str(record["id"]), str(record["template"]))
        except (json.JSONDecodeError, KeyError, TypeError):
            raise UserError(f"{uri}:{number}: expected {{\"id\": ..., \"template\": ...}}") from None
        problems = check_template(template.text)
        if problems:
            raise UserError(f"{uri}:{number}: template {template.id}: {'; '.join(problems)}")
        if template.id in seen:
            raise UserError(f"{uri}:{number}: duplicate template id {template.id!r}")
        seen.add(template.id)
        bank.append(template)
    if len(bank) < 2:
        raise UserError(f"{uri}: a bank needs at least 2 templates (two captions per crop), found {len(bank)}")
    return bank


def _draw(seed: int, key: str, salt: str, n: int) -> int:
    digest = hashlib.blake2b(f"{seed}\x00{key}\x00{salt}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") % n


def draw_templates(bank: list[Template], seed: int, key: str, count: int = 2) -> list[Template]:
    """`count` different templates for crop `key`, a pure function of (seed, key)."""
    if count > len(bank):
        raise ValueError(f"cannot draw {count} different templates from {len(bank)}")
    picked: list[int] = []
    attempt = 0
    while len(picked) < count:
        index = _draw(seed, key, f"{len(picked)}:{attempt}", len(bank))
        attempt += 1
        if index not in picked:
            picked.append(index)
    return [bank[i] for i in picked]


def request_seed(seed: int, key: str, salt: str) -> int:
    """A 31-bit sampling seed per request, stable across runs (vLLM takes it per request)."""
    return _draw(seed, key, salt, 2**31 - 1)
