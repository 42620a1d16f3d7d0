"""Reading structured replies: the JSON object a model was asked for, as it tends to send it."""

from __future__ import annotations

import re

_CODE_FENCE = re.compile(r"^```(?:json)?\s*\n?(.*?)\n?```$", re.DOTALL)


def without_code_fence(text: str) -> str:
    """`text` stripped, and without a Markdown code fence (```json … ```) around all of it."""
    stripped = text.strip()
    if match := _CODE_FENCE.match(stripped):
        return match.group(1).strip()
    return stripped
