"""API keys kept out of everything printed, stored or exported: `redact` removes every key
this process knows, in its common encodings."""

from __future__ import annotations

import base64
import bisect
import functools
import itertools
import os
import re
from collections.abc import Callable

SECRET_VARIABLES = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY")
_MIN_SECRET = 8  # shorter values (e.g. a local server's placeholder key) are no secrets
_known_secrets: set[str] = set()


def remember_secret(value: str) -> None:
    """Add an API key given to a provider to what `redact` removes (whatever its source)."""
    if len(value) >= _MIN_SECRET:
        _known_secrets.add(value)


def redact(text: str) -> str:
    """`text` without any API key this process knows: the values of the API-key variables
    and every key given to a provider; for anything we print, store or export.

    Each key is removed as it is and in its common encodings: spaced out (any whitespace,
    invisible characters and marks `-_.,:;|/+*·` between its characters, as is or escaped),
    each character escaped or not (JSON or JavaScript `\\u0073`, double-escaped too,
    `\\x73`, `\\/`, percent `%73` or `%2573`, HTML `&#115;` or `&#x73;`, mixed freely),
    base64 (standard or URL-safe alphabet, alone or inside a longer base64 text at any byte
    alignment), hex (either case, bytes optionally separated) and reversed. The mask names
    the variable a key came from (`[OPENAI_API_KEY redacted]`), else reads
    `[API key redacted]`. A byte-level check clears nearly every text (about 10 µs for 2 KB;
    `benchmarks/redaction.py`); only a text that may hold a key, or holds an escape, is
    searched.
    """
    secrets = _current_secrets()
    return _redacted(secrets, text) if secrets else text


def redaction() -> Callable[[str], str] | None:
    """`redact` for the keys known now, for many texts in a row (every string of a report's
    run files); None when no key is known, so that a caller can skip the texts altogether."""
    secrets = _current_secrets()
    if not secrets:
        return None
    return functools.partial(_redacted, secrets)


def _current_secrets() -> tuple[tuple[str, str], ...]:
    """(key, mask) for every key known now, longest first (a key inside another is masked
    with it); a key in a variable is masked with the variable's name."""
    found: dict[str, str] = {}
    for variable in SECRET_VARIABLES:
        secret = os.environ.get(variable, "")
        if len(secret) >= _MIN_SECRET:
            found.setdefault(secret, f"[{variable} redacted]")
    for secret in tuple(_known_secrets):  # a copy: another thread may add one
        found.setdefault(secret, "[API key redacted]")
    return tuple(sorted(found.items(), key=lambda pair: (-len(pair[0]), pair[0])))


def _redacted(secrets: tuple[tuple[str, str], ...], text: str) -> str:
    """`text` with every form of each key replaced by its mask.

    The search runs on the text with its gaps taken out (`_gap_pattern`: whitespace,
    invisible characters and marks, as is or escaped), which is how a spaced-out key is
    found; each match is mapped back to the span of the text it came from, gaps inside it
    included."""
    redactor = _redactor(secrets)
    if not redactor.may_hold_a_secret(text):
        return text
    for secret, mask in redactor.literal:
        text = text.replace(secret, mask)
    patterns = [(_key_pattern(secret), mask) for secret, mask in redactor.spelled]
    core = _without_gaps(text)
    if not any(pattern.search(core) for pattern, _ in patterns):
        return text  # the usual end for a text with an escape: no key in it
    parts = _gap_pattern().split(text)  # text, gap, text, …, text: the same text less gaps
    raw_starts = [0, *itertools.accumulate(map(len, parts))]
    kept = [(i, part) for i, part in enumerate(parts[::2]) if part]
    if not kept:
        return text
    core = "".join(part for _, part in kept)
    core_starts = [0, *itertools.accumulate(len(part) for _, part in kept)]

    def raw(at: int) -> int:  # the position in `text` of `core[at]`
        index = bisect.bisect_right(core_starts, at) - 1
        return raw_starts[2 * kept[index][0]] + at - core_starts[index]

    spans = sorted(
        (raw(match.start()), raw(match.end() - 1) + 1, mask)
        for pattern, mask in patterns
        for match in pattern.finditer(core)
    )
    pieces, done = [], 0
    for start, end, mask in spans:
        if start >= done:  # spans overlapping one already masked are masked with it
            pieces += [text[done:start], mask]
            done = end
        else:
            done = max(done, end)
    return "".join([*pieces, text[done:]]) if pieces else text


# Gaps: whitespace (exactly what the regex class `\s` matches), invisible characters and the
# marks that may separate the characters of a spaced-out key or the bytes of its hex.
_WHITESPACE = (
    "\t\n\v\f\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
    "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
_GAPS = _WHITESPACE + "\u00ad\u200b\u200c\u200d\u2060\ufeff" + "-_.,:;|/+*\u00b7"
# The prefilter deletes every ASCII gap and every non-ASCII byte (a non-ASCII gap is made of
# those only), from the text and from each probe alike.
_DELETED_BYTES = bytes(sorted({ord(c) for c in _GAPS if ord(c) < 0x80} | set(range(0x80, 0x100))))
_PROBE = 16  # bytes of a probe looked for: enough to be unique, short enough to be fast
# Where an escape could start (each regex led by one literal: a fast scan). A text without
# one holds a key only as its characters with gaps between.
_BACKSLASH_ESCAPE = re.compile(rb"\\\\*(?:[uxnrtfv]|[^0-9A-Za-z])")
_PERCENT_ESCAPE = re.compile(rb"%[0-9A-Fa-f]{2}")
_BASE64 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_URL_SAFE = str.maketrans("+/", "-_")
_NO_GAPS = str.maketrans("", "", _GAPS)
_ASCII_GAP_BYTES = bytes(ord(c) for c in _GAPS if ord(c) < 0x80)
_NON_ASCII_GAPS = tuple(c for c in _GAPS if ord(c) >= 0x80)


class _Redactor:
    """The keys of one set, in two kinds: `spelled`, searched in every form, and `literal`
    (fewer than 8 characters once gaps are taken out: spaced out, such a key would be too
    short to tell from ordinary text), searched as is only; and the byte-level prefilter:
    probes (a stretch of every form of each key, gaps deleted) that any text holding a key
    holds too."""

    def __init__(self, secrets: tuple[tuple[str, str], ...]) -> None:
        self.spelled = tuple(s for s in secrets if len(s[0].translate(_NO_GAPS)) >= _MIN_SECRET)
        self.literal = tuple(s for s in secrets if s not in self.spelled)
        probes: dict[bytes, None] = {}
        hex_probes: dict[bytes, None] = {}
        for secret, _ in self.spelled:
            data = secret.encode()
            stripped = data.translate(None, _DELETED_BYTES)
            probes[stripped[-_PROBE:]] = probes[stripped[::-1][:_PROBE]] = None  # and reversed
            for inner, _ in _base64_parts(data):
                probes[inner.encode().translate(None, _DELETED_BYTES)[-_PROBE:]] = None
            hex_probes[data.hex().encode()[-2 * _PROBE :]] = None
        self.probes = tuple(probes)
        self.hex_probes = tuple(hex_probes)

    def may_hold_a_secret(self, text: str) -> bool:
        """False only when no key is in `text` in any form `_redacted` finds: with no escape
        in the text, a form is the characters of a key, of its base64, hex or reverse, with
        gaps between: deleting those (and every non-ASCII byte) from both the text and the
        form leaves the form a substring."""
        if any(secret in text for secret, _ in self.literal):
            return True
        data = text.encode("utf-8", "surrogatepass")
        if (
            b"&#" in data
            or (b"\\" in data and _BACKSLASH_ESCAPE.search(data))
            or (b"%" in data and _PERCENT_ESCAPE.search(data))
        ):
            return True
        core = data.translate(None, _DELETED_BYTES)
        if any(probe in core for probe in self.probes):
            return True
        lowered = core.lower()
        return any(probe in lowered for probe in self.hex_probes)


@functools.lru_cache(maxsize=16)
def _redactor(secrets: tuple[tuple[str, str], ...]) -> _Redactor:
    """One prefilter per set of known keys, reused until a key is added or a variable changes."""
    return _Redactor(secrets)


def _hex_class(value: int, width: int) -> str:
    """`value` as `width` hex digits matching either case (`[aA]7`)."""
    return "".join(f"[{d}{d.upper()}]" if d.isalpha() else d for d in f"{value:0{width}x}")


def _escapes(char: str) -> tuple[list[str], str, str]:
    """Regexes for `char` escaped, each less the escape's first character: backslashed ones
    (`\\`), percent-encoded (`%`) and an HTML entity (`&`, less its `;`)."""
    point = ord(char)
    if point <= 0xFFFF:
        backslashed = [rf"\\*u{_hex_class(point, 4)}"]
    else:
        high, low = 0xD800 + ((point - 0x10000) >> 10), 0xDC00 + ((point - 0x10000) & 0x3FF)
        backslashed = [rf"\\*u{_hex_class(high, 4)}\\+u{_hex_class(low, 4)}"]
    if point <= 0xFF:
        backslashed.append(rf"\\*x{_hex_class(point, 2)}")
    if not char.isalnum():
        backslashed.append(rf"\\*{re.escape(char)}")
    percent = "%".join(f"(?:25)*{_hex_class(byte, 2)}" for byte in char.encode())
    entity = f"#(?:0*{point}|[xX]0*{_hex_class(point, 1)})"
    return backslashed, percent, entity


def _escaped_gaps() -> tuple[str, str, str]:
    """Regexes for an escaped gap, by the escape's first character (`\\`, `%`, `&`), each
    less that character; factored, so that a candidate is told apart in a few steps."""
    codes = [ord(char) for char in _GAPS]
    unicode = "|".join(_hex_class(code, 4) for code in codes)
    latin = "|".join(_hex_class(code, 2) for code in codes if code <= 0xFF)
    backslashed = rf"\\*(?:[nrtfv{re.escape(_GAPS)}]|u(?:{unicode})|x(?:{latin}))"
    percent = "(?:25)*(?:{})".format(
        "|".join("%(?:25)*".join(_hex_class(b, 2) for b in c.encode()) for c in _GAPS)
    )
    entity = "#(?:0*(?:{})|[xX]0*(?:{}))".format(
        "|".join(str(code) for code in codes), "|".join(_hex_class(code, 1) for code in codes)
    )
    return backslashed, percent, entity


@functools.cache
def _escaped_gap_pattern() -> re.Pattern[str]:
    """An escaped gap (`\\n`, `\\/`, `\\u200b`, `%20`, `&#32;`), led by one class: a fast
    scan to the next `\\`, `%` or `&`."""
    backslashed, percent, entity = _escaped_gaps()
    return re.compile(
        rf"[\\%&](?:(?<=\\)(?:{backslashed})|(?<=%)(?:{percent})|(?<=&)(?:{entity});)"
    )


@functools.cache
def _gap_pattern() -> re.Pattern[str]:
    """A run of gaps, as is or escaped, as one capturing group (for `split`)."""
    backslashed, percent, entity = _escaped_gaps()
    gap = rf"[{re.escape(_GAPS)}]|\\(?:{backslashed})|%(?:{percent})|&(?:{entity});"
    return re.compile(f"((?:{gap})+)")


def _without_gaps(text: str) -> str:
    """`text` less its gaps, as `_gap_pattern().split` leaves it, faster: the escaped ones
    first (scanning from one escape's first character to the next), then the others."""
    text = _escaped_gap_pattern().sub("", text)
    if text.isascii():
        return text.translate(_NO_GAPS)
    data = text.encode("utf-8", "surrogatepass").translate(None, _ASCII_GAP_BYTES)
    text = data.decode("utf-8", "surrogatepass")
    for char in _NON_ASCII_GAPS:
        if char in text:
            text = text.replace(char, "")
    return text


def _spelled(text: str) -> list[tuple[str, str]]:
    """`text` character by character, each as is or escaped (an HTML entity's `;` is a gap,
    taken out): (the characters it may start with, a regex for the rest)."""

    def escaped(char: str) -> str:
        backslashed, percent, entity = _escapes(char)
        return rf"(?:(?<=\\)(?:{'|'.join(backslashed)})|(?<=%){percent}|(?<=&){entity})"

    rest = "".join(f"(?:{re.escape(char)}|[\\\\%&]{escaped(char)})" for char in text[1:])
    return [(text[0], rest), ("\\%&", escaped(text[0]) + rest)]


def _base64_parts(data: bytes) -> list[tuple[str, str]]:
    """(the base64 characters that encode nothing but `data`, the characters that may come
    next) for each alignment of `data` inside a longer base64 text, in both alphabets. The
    characters that also encode a byte before or after `data` are left out."""
    parts = []
    for offset in range(3):
        encoded = base64.b64encode(bytes(offset) + data + bytes(2)).decode("ascii")
        start, end = -(-8 * offset // 6), 8 * (offset + len(data)) // 6
        spare = 8 * (offset + len(data)) % 6  # bits of `data` in the character after `end`
        after = ""
        if spare:
            free = 6 - spare
            high = (data[-1] & ((1 << spare) - 1)) << free
            after = "".join(chr(_BASE64[high | low]) for low in range(1 << free))
        parts.append((encoded[start:end], after))
        parts.append((encoded[start:end].translate(_URL_SAFE), after.translate(_URL_SAFE)))
    return list(dict.fromkeys(parts))


@functools.lru_cache(maxsize=16)
def _key_pattern(secret: str) -> re.Pattern[str]:
    """Every form of `secret` that `redact` removes, as one regex over a text with its gaps
    taken out (so the key's own gap characters are taken out of it too). The regex starts
    with the class of every form's first character (a fast scan to the next candidate), then
    tells the forms apart by that character."""
    core = secret.translate(_NO_GAPS)
    forms = [*_spelled(core), *_spelled(core[::-1])]
    for inner, after in _base64_parts(secret.encode()):
        inner, tail = inner.translate(_NO_GAPS), after.translate(_NO_GAPS)
        tail_class = f"[{re.escape(tail)}]?" if tail else ""
        forms.append((inner[0], f"{re.escape(inner[1:])}{tail_class}={{0,2}}"))
    data = secret.encode()
    first = f"{data[0]:02x}"
    digits = _hex_class(int(first[1], 16), 1) + "".join(_hex_class(byte, 2) for byte in data[1:])
    forms.append((first[0] + first[0].upper(), digits))
    leads = "".join(dict.fromkeys("".join(lead for lead, _ in forms)))
    body = "|".join(f"(?<=[{re.escape(lead)}]){rest}" for lead, rest in forms)
    return re.compile(f"[{re.escape(leads)}](?:{body})")
