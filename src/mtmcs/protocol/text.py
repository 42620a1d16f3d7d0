"""Text from outside (replies, verdicts, dataset fields, captions, error bodies) made safe:
invalid code points (lone UTF-16 surrogates) replaced, control characters shown escaped."""

from __future__ import annotations

import re

REPLACEMENT = "\ufffd"
_SURROGATE = re.compile("[\ud800-\udfff]")
# C0 controls except tab and newline, DEL, and C1 controls: shown as escapes on a terminal.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def normalised(text: str) -> tuple[str, int]:
    """`text` with every lone surrogate (a code point no UTF-8 can encode) replaced by
    U+FFFD, and how many were replaced."""
    return _SURROGATE.subn(REPLACEMENT, text)


def invalid_code_points(text: str) -> int:
    """How many code points of `text` no UTF-8 can encode (lone surrogates)."""
    return 0 if text.isascii() else len(_SURROGATE.findall(text))


def printable(text: str) -> str:
    """`text` safe for a terminal: escape sequences and other control characters (but
    newline and tab) shown escaped (`\\x1b`), lone surrogates replaced."""
    return _CONTROL.sub(lambda match: f"\\x{ord(match.group()):02x}", normalised(text)[0])
