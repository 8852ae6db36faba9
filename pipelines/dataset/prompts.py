"""The MLLM prompts (filter verdict and captioning), the fixed JSON verdict form and its parser.

Both backends send exactly these texts with the crop image first, and parse answers with
`parse_verdict`; nothing here depends on a backend. The filter answer is a JSON object with four
booleans in a fixed order; since that form is finite, guided decoding constrains generation to its
16 canonical serialisations (`verdict_choices`), and the parser stays strict either way: anything
that is not exactly such an object is `filter_unparseable`, never guessed.
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass

from pipelines.dataset.outcomes import Reason

VERDICT_FIELDS = ("single_person", "real_person", "clearly_visible", "good_quality")
VERDICT_REASONS = {
    "single_person": Reason.FILTER_NOT_SINGLE_PERSON,
    "real_person": Reason.FILTER_NOT_REAL_PERSON,
    "clearly_visible": Reason.FILTER_NOT_VISIBLE,
    "good_quality": Reason.FILTER_POOR_QUALITY,
}
VERDICT_SCHEMA = {
    "type": "object",
    "properties": {name: {"type": "boolean"} for name in VERDICT_FIELDS},
    "required": list(VERDICT_FIELDS),
    "additionalProperties": False,
}

FILTER_PROMPT = (
    "You check images for a dataset of person descriptions. Look at the image and answer with JSON "
    "only, exactly in this form:\n"
    '{"single_person": true or false, "real_person": true or false, "clearly_visible": true or false, '
    '"good_quality": true or false}\n'
    "single_person: exactly one person is the subject of the image.\n"
    "real_person: a real human in a photograph, not a drawing, cartoon, painting, statue, mannequin, "
    "toy or a collage of several pictures.\n"
    "clearly_visible: most of the body is in the image and not hidden behind objects or other people.\n"
    "good_quality: sharp and bright enough to see the clothing and its colours."
)

CAPTION_PROMPT = (
    "Describe the person in the image in plain English.\n"
    "Rules:\n"
    "- Describe only the person: gender, clothing, footwear, head (hair, headwear), accessories, "
    "action, and the colours of each item.\n"
    "- Use vague colour words such as dark or light only when you are not sure of a colour.\n"
    "- Do not describe the background or the surroundings.\n"
    "- Do not speculate, and do not mention emotions, personality or style.\n"
    "- Sentence Structure Reference: {template}\n"
    "- Use fewer than {max_words} English words."
)


def filter_prompt() -> str:
    return FILTER_PROMPT


def caption_prompt(template: str, max_words: int) -> str:
    return CAPTION_PROMPT.format(template=template, max_words=max_words)


def canonical_verdict(values: dict[str, bool]) -> str:
    return json.dumps({name: bool(values[name]) for name in VERDICT_FIELDS})


def verdict_choices() -> list[str]:
    """Every well-formed answer, canonically serialised (the guided-decoding alternatives)."""
    return [canonical_verdict(dict(zip(VERDICT_FIELDS, bits))) for bits in itertools.product((True, False), repeat=4)]


@dataclass(frozen=True)
class Verdict:
    values: dict[str, bool]

    @property
    def passed(self) -> bool:
        return all(self.values[name] for name in VERDICT_FIELDS)

    @property
    def reason(self) -> Reason | None:
        """The first failed field's reason, in the fixed field order; None when everything holds."""
        for name in VERDICT_FIELDS:
            if not self.values[name]:
                return VERDICT_REASONS[name]
        return None


_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.S)


class VerdictError(ValueError):
    pass


def parse_verdict(text: str) -> Verdict:
    """The verdict in `text` (an optional ```json fence allowed), or VerdictError saying why not."""
    body = text.strip()
    fenced = _FENCE.match(body)
    if fenced:
        body = fenced.group(1)
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, RecursionError) as err:
        raise VerdictError(f"not JSON ({err.msg} at {err.pos})" if hasattr(err, "msg") else "not JSON") from None
    if not isinstance(data, dict):
        raise VerdictError(f"not a JSON object but {type(data).__name__}")
    missing = [name for name in VERDICT_FIELDS if name not in data]
    extra = sorted(set(data) - set(VERDICT_FIELDS))
    if missing or extra:
        raise VerdictError(f"fields: missing {missing}, unexpected {extra}")
    wrong = [name for name in VERDICT_FIELDS if not isinstance(data[name], bool)]
    if wrong:
        raise VerdictError(f"not true/false: {wrong}")
    return Verdict({name: data[name] for name in VERDICT_FIELDS})
