"""Reading an MCQ letter or a TF verdict the way the model meant it.

A reply parses only when it states exactly one option (one verdict); anything else is `None`
and counts as wrong. Never "the first letter anywhere". Ignored: Markdown decoration, `$`,
`\\boxed{}`, quotes around a letter and a `<think>` block (reasoning, not the answer).

MCQ statements come in two tiers; the first tier that states anything decides, and it must
state exactly one letter within the options:
- tier 1: a declaration anywhere ("the answer is X", "Answer: X", "my answer: X", "I would
  choose X", "the correct option is (X)", "X is the best answer", "it's X"); the leading
  letter (`X`, `X.`, `(X)`, `**X**`, `X) …`, `X - …`, `X` then a rationale); a line that is
  only a letter; "Option X: …" opening a line; a letter closing the reply ("…, so B.");
  an option's text (nearly: case, punctuation, a slip) as the whole reply, after its own
  letter or after "the answer is"; in a lettered list, the one line marked correct.
- tier 2, only if the reply neither hedges nor refuses: "option X" elsewhere, bold or
  bracketed letters, one option's full text anywhere. A paraphrase of an option is not read.
Letters must read as letters: "A" before a lower-case word is the article, "I" the pronoun,
"a" counts only bracketed or before punctuation, "i" never. Stating nothing: a negated letter
("not A", "rather than A", "A is wrong"), a letter in a condition, doubt or quote ("if the
answer is A", "I'm not sure the answer is A"). Unparseable: several letters offered together
("A or C", "A, C", "B/C", "both A and C"), two different stated letters, a stated letter
outside the options. An echoed option list (two or more options' texts, or lines labelled
with two or more letters) or a reply opening with "let's analyse the options" states only
what its tier-1 declarations and letter-only lines state.

TF, tier 1: a leading verdict ("True", "False – …", "Answer: True", "Yes, true"), "the
statement / it / this is true" (correct, accurate; "is not true" reads false), "I'd say
false", a bold verdict, a verdict alone on a line or closing the reply. Tier 2, without
hedges or refusals: every mention of true / false agrees. Unparseable: both verdicts, "true or
false", "not entirely true", a verdict in a condition or doubt.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"

# --- cleaning ------------------------------------------------------------------------------

_BOXED = re.compile(r"\\boxed\{\s*(?:\\text\{)?([^{}]*)\}?\s*\}")
_BOLD = re.compile(r"(\*\*|__)\s*[(\[]?\s*([A-Za-z]|true|false)\s*[)\]]?\s*[.:]?\s*\1", re.I)
_MARKUP = re.compile(r"[*`$]+|__+|^\s*(?:#+|>+|[-•+](?=\s))\s*", re.M)
_THINKING = re.compile(r"<think(?:ing)?>.*?(?:</think(?:ing)?>|\Z)", re.S | re.I)
_QUOTED = re.compile(r"[\"“”'‘’]([A-Za-z])[\"“”'‘’](?![A-Za-z])")
_HSPACE = re.compile(r"[ \t\u00a0]+")


def _clean(text: str) -> str:
    """Reasoning blocks, Markdown and LaTeX decoration and quotes around a letter removed, runs
    of spaces squashed, blank lines dropped."""
    text = _THINKING.sub("", text)
    text = _QUOTED.sub(r"\1", _MARKUP.sub("", _BOXED.sub(r"(\1)", text)))
    lines = (_HSPACE.sub(" ", line).strip() for line in text.splitlines())
    return "\n".join(line for line in lines if line)


def _normalise(text: str) -> str:
    """Lower case, punctuation as spaces, single spaces: for comparing option texts."""
    return " ".join(re.sub(r"[^a-z0-9]+", " ", re.sub(r"['’]", "", text.lower())).split())


# --- what reads as a letter ----------------------------------------------------------------

# One letter, optionally bracketed, standing alone as a word.
_TOKEN = r"(?<![A-Za-z0-9'’])(?P<open>[(\[])?(?P<letter>[A-Za-z])(?P<close>[)\]])?(?![A-Za-z0-9'’])"
# Lower-case words that may follow a letter "A" that is not the article.
_AFTER_A = frozenset(
    (
        *("because", "since", "as", "is", "was", "seems", "fits", "matches", "describes"),
        *("best", "correctly", "which", "given", "for", "here", "instead", "too", "then"),
        *("rather", "over", "or", "and", "but", "not"),
    )
)
_NEXT_WORD = re.compile(r"[ \t]+([a-z]\w*)")
_HEDGE = re.compile(
    r"\b(?:sorry|apologi[sz]e|cannot|can[’']?t|unable|not\s+(?:sure|certain|possible|clear|"
    r"enough)|unsure|uncertain|unclear|could\s+be|might\s+be|may\s+be|either|insufficient|"
    r"hard\s+to|difficult\s+to|impossible|as\s+an\s+ai|none\s+of|depends|partially|partly|"
    r"somewhat|mostly|half|whether)\b",
    re.I,
)
# A declaration inside a condition, a doubt or reported speech states nothing.
_UNASSERTED = re.compile(
    r"\b(?:whether|if(?!\s+(?:i|we)\s+(?:had|have|must)\s+to\b)|not\s+sure|unsure|uncertain|"
    r"doubt|says|said|claims?|claimed)\b[^.!?\n,;:]*\Z",
    re.I,
)
# A reply that opens by announcing a walk through the options discusses them: only
# declarations count.
_ANALYSIS = re.compile(
    r"\A[^.!?\n]*?\b(?:let[’']?s|let\s+me|i[’']ll|we\s+(?:will|need\s+to|can))\s+(?:first\s+)?"
    r"(?:analy[sz]e|consider|look\s+at|go\s+through|evaluate|examine|review|break\s+down)\b",
    re.I,
)
_NEGATED_BEFORE = re.compile(
    r"(?:\bnot|n[’']t|\bthan|\bunlike|\binstead\s+of|\bexcept|\bnor|\bexclude|\bexcluding|"
    r"\beliminate|\brule\s+out|\bover|\bneither|\bagainst)\s+(?:(?:option|choice|answer)\s*)?$",
    re.I,
)
_NEGATED_AFTER = re.compile(
    r"^[)\]]?\s*[:\-–—]?\s*(?:(?:is|are|was|does|do|would|seems|appears|sounds)\s+)?"
    r"(?:not\b|n[’']t\b|never\b|wrong|incorrect|unlikely|inaccurate|irrelevant|incorrectly|"
    r"ruled\s+out|eliminated|excluded|a\s+distractor|too\b|less\b)",
    re.I,
)
# After a stated letter: another letter offered with it ("A or C", "A, C", "B/C", "B C").
_ALSO = re.compile(
    r"^[ \t]*(?:,|/|&|\+|\bor\b|\band\b|\band/or\b)?[ \t]*(?:(?:possibly|maybe|perhaps)[ \t]+)?"
    r"(?:(?:option|choice)[ \t]*)?" + _TOKEN,
    re.I,
)
_BOTH_BEFORE = re.compile(r"\b(?:both|either|between)\s+(?:(?:option|choice)s?\s*)?$", re.I)


def _reads_as_letter(letter: str, close: str | None, after: str) -> bool:
    """Whether a one-letter word is an option letter rather than "a" or "I"."""
    if letter == "i":
        return False
    if close is not None:  # "(a)", "a)", "[B]"
        return True
    if letter == "a":
        return not after or after[0] in ".,;:!?)]\n"
    word = _NEXT_WORD.match(after) if letter in "AI" else None
    return word is None or word.group(1) in _AFTER_A


def _token_end(match: re.Match[str]) -> int:
    return match.end("close") if match.group("close") is not None else match.end("letter")


def _letter_at(text: str, match: re.Match[str]) -> str | None:
    """The upper-case letter of a `_TOKEN` match when it reads as a letter, else `None`."""
    letter = match.group("letter")
    if not _reads_as_letter(letter, match.group("close"), text[_token_end(match) :]):
        return None
    return letter.upper()


# --- MCQ statements ------------------------------------------------------------------------

_COPULA = (
    r"(?:(?:is|would\s+be|should\s+be|will\s+be|must\s+be|(?:seems|appears)\s+to\s+be)"
    r"\s*[:\-–—]?|[:=\-–—])"
)
_ADVERB = (
    r"(?:(?:most\s+likely|likely|probably|clearly|definitely|therefore|thus|then|indeed|"
    r"certainly)\s*[:,]?\s*)?"
)
_NOUN_AFTER = r"(?:(?:option|choice|letter|answer)\s*)?"
_DECLARATIONS = tuple(
    re.compile(pattern + _TOKEN, re.I)
    for pattern in (
        # "The (correct / final) answer (to this question) is (most likely) (option) X", "Answer: X"
        rf"\banswer(?:\s+(?:to|for)\s+(?:this|the)\s+question)?\s*{_COPULA}?\s*{_ADVERB}"
        + _NOUN_AFTER,
        # "The correct option is (C)", "My choice: B", "The most likely option is C"
        r"\b(?:correct|right|best|final|most\s+\w+|appropriate|accurate|my|chosen|selected)\s+"
        rf"(?:option|choice|letter|pick|selection)\s*{_COPULA}\s*{_ADVERB}" + _NOUN_AFTER,
        # "The user's most likely intent is C"
        rf"\bintent\s*{_COPULA}\s*{_ADVERB}" + _NOUN_AFTER,
        # "The option that best describes the user's intent is B"
        r"\b(?:option|choice|answer)\s+that\s+[^.\n]{1,80}?\s+is\s*:?\s*" + _NOUN_AFTER,
        # "I would choose B", "I'd go with option C", "I think it's B", "I'm going with C"
        r"\bi\s*(?:would|will|must|should|[’'](?:d|ll))?\s*(?:choose|chose|pick|select|go\s+with|"
        r"opt\s+for|say|answer)\s+(?:that\s+)?(?:it\s+is\s+|it[’']s\s+)?" + _NOUN_AFTER,
        r"\bi(?:[’']m|\s+am)\s+(?:going\s+with|choosing|picking|selecting)\s+" + _NOUN_AFTER,
        r"\bi\s+(?:think|believe)\s+(?:that\s+)?(?:it\s+is\s+|it[’']s\s+)?" + _NOUN_AFTER,
        # "It's B", "Not A but D"
        r"\b(?:it|that|this)(?:[’']s|\s+is)\s+" + _ADVERB + _NOUN_AFTER,
        r"\bnot\s+(?:(?:option|choice)\s*)?[(\[]?[A-Za-z][)\]]?\s*,?\s*but\s+(?:rather\s+)?"
        + _NOUN_AFTER,
    )
)
# "Option C is correct", "C is the best answer", "D best fits the user's intent".
_IS_CORRECT = re.compile(
    rf"(?:\b(?:option|choice|answer|letter)\s*)?{_TOKEN}\s+(?:(?:is|seems|appears)\s+(?:to\s+be\s+)?"
    r"(?:the\s+|my\s+)?(?:most\s+)?(?:correct|right|accurate|appropriate|best|likely|answer)\b"
    r"(?!\s+(?:than|but))|(?:best|most\s+(?:closely|accurately))\s+(?:fits|matches|describes|"
    r"captures|reflects)\b)",
    re.I,
)
_LEADING = re.compile(
    rf"\A(?:(?:definitely|clearly|probably|likely|most\s+likely)\s*[,:]?\s*)?"
    rf"(?:(?:option|choice)\s*)?{_TOKEN}",
    re.I,
)
_LINE_ONLY = re.compile(rf"^(?:(?:option|choice)\s*)?{_TOKEN}\s*[.!]?$", re.I | re.M)
_LINE_OPTION = re.compile(rf"^(?:option|choice)\s*{_TOKEN}(?=\s*(?:[:.\-–—)]|$))", re.I | re.M)
_CLOSING = re.compile(
    r"(?:[,:.!?\n]|\b(?:is|as))\s*(?:(?:so|thus|therefore|hence)\s+)?(?:(?:option|choice)\s*)?"
    rf"{_TOKEN}\s*[.!]?\s*\Z",
    re.I,
)
_MENTION = re.compile(rf"\b(?:option|choice)\s*{_TOKEN}", re.I)
_BRACKETED = re.compile(rf"(?=[(\[]){_TOKEN}")
_LABEL = re.compile(rf"^(?:(?:option|choice)\s*)?{_TOKEN}\s*[.):\-–—]", re.I | re.M)
_MARKED = re.compile(
    rf"^(?:(?:option|choice)\s*)?{_TOKEN}\s*[.):\-–—]\s*[-–—:]?\s*"
    r"(?P<mark>correct|right|yes|✓|✔|✅|incorrect|wrong|no|✗|✘|❌)(?![A-Za-z])",
    re.I | re.M,
)
_LEAD_IN = re.compile(
    r"^(?:(?:the\s+)?(?:correct\s+|final\s+|best\s+)?(?:answer|option|choice)\s*(?:is)?\s*[:\-]?"
    r"\s*|(?:the\s+)?user[’']s\s+intent\s+is\s*:?\s*)",
    re.I,
)


class _Reading:
    """Letters stated by one tier, and whether several were offered together."""

    def __init__(self) -> None:
        self.letters: set[str] = set()
        self.several = False

    def add(self, letter: str | None) -> None:
        if letter is not None:
            self.letters.add(letter)

    def stated(self, text: str, match: re.Match[str], *, check_negation: bool = False) -> None:
        """Record the letter of a `_TOKEN` match at a stated position."""
        letter = _letter_at(text, match)
        if letter is None or _UNASSERTED.search(text[: match.start()]):
            return
        start, end = match.start("letter"), _token_end(match)
        if check_negation and (
            _NEGATED_AFTER.match(text[end:]) or _NEGATED_BEFORE.search(text[:start])
        ):
            return
        if _BOTH_BEFORE.search(text[: match.start()]):
            self.several = True
        if (also := _ALSO.match(text[end:])) and _letter_at(text[end:], also) not in (None, letter):
            self.several = True
        self.letters.add(letter)


def _option_letters(normalised: str, options: Sequence[str], letters: str) -> list[str]:
    """Letters of the options whose full (normalised) text occurs in `normalised`."""
    padded = f" {normalised} "
    return [
        letter
        for letter, option in zip(letters, options, strict=True)
        if (text := _normalise(option)) and f" {text} " in padded
    ]


def _whole_option(cleaned: str, options: Sequence[str], letters: str) -> str | None:
    """The option whose text the whole reply is, nearly (case, punctuation, a small slip)."""
    reply = _normalise(_LEAD_IN.sub("", cleaned))
    if not reply:
        return None
    ratios = [
        difflib.SequenceMatcher(None, reply, _normalise(option)).ratio() for option in options
    ]
    best = max(ratios)
    if best >= 0.9 and sum(ratio >= 0.8 for ratio in ratios) == 1:
        return letters[ratios.index(best)]
    return None


def _labelled_options(normalised: str, options: Sequence[str], letters: str) -> set[str]:
    """Options quoted after a letter label or after "answer (is)"; a label naming another
    option's text states both (a contradiction)."""
    found: set[str] = set()
    for letter, option in zip(letters, options, strict=True):
        if not (text := _normalise(option)):
            continue
        lead = r"(?:(?P<label>[a-z]) |(?:answer|option|choice)(?: is)?(?: that)? )"
        for match in re.finditer(rf"(?:^| ){lead}{re.escape(text)}(?: |$)", normalised):
            found.add(letter)
            if (label := match.group("label")) is not None and label not in "ai":
                found.add(label.upper())
    return found


def _tier_one(cleaned: str, options: Sequence[str], letters: str, listed: bool) -> _Reading:
    reading = _Reading()
    for pattern in _DECLARATIONS:
        for match in pattern.finditer(cleaned):
            reading.stated(cleaned, match)
    for match in _IS_CORRECT.finditer(cleaned):
        reading.stated(cleaned, match)
    marked = [
        _letter_at(cleaned, match)
        for match in _MARKED.finditer(cleaned)
        if match.group("mark").lower() in ("correct", "right", "yes", "✓", "✔", "✅")
    ]
    if len(marked) == 1:
        reading.add(marked[0])
    for match in _LINE_ONLY.finditer(cleaned):
        reading.stated(cleaned, match, check_negation=True)
    if listed:
        return reading
    positional = (
        _LEADING.match(cleaned),
        _CLOSING.search(cleaned),
        *_LINE_OPTION.finditer(cleaned),
    )
    for found in positional:
        if found is not None:
            reading.stated(cleaned, found, check_negation=True)
    reading.add(_whole_option(cleaned, options, letters))
    reading.letters |= _labelled_options(_normalise(cleaned), options, letters)
    return reading


def _tier_two(raw: str, cleaned: str, options: Sequence[str], letters: str) -> _Reading:
    reading = _Reading()
    for match in _MENTION.finditer(cleaned):
        reading.stated(cleaned, match, check_negation=True)
    for match in _BRACKETED.finditer(cleaned):
        if match.group("close") is not None:
            reading.stated(cleaned, match, check_negation=True)
    for match in _BOLD.finditer(raw):
        if len(match.group(2)) == 1 and match.group(2) not in "ai":
            reading.add(match.group(2).upper())
    reading.letters.update(_option_letters(_normalise(cleaned), options, letters))
    return reading


def _decide(reading: _Reading, letters: str) -> tuple[bool, str | None]:
    """(decided, letter): a tier decides once it states anything."""
    if reading.several:
        return True, None
    if not reading.letters:
        return False, None
    if len(reading.letters) == 1 and (letter := next(iter(reading.letters))) in letters:
        return True, letter
    return True, None


def _listed(cleaned: str, options: Sequence[str], letters: str) -> bool:
    """Whether the reply echoes the option list (or discusses the options one by one)."""
    labels = {_letter_at(cleaned, match) for match in _LABEL.finditer(cleaned)} - {None}
    quoted = _option_letters(_normalise(cleaned), options, letters)
    return len(labels) >= 2 or len(quoted) >= 2 or bool(_ANALYSIS.search(cleaned))


def parse_mcq(text: str, options: Sequence[str]) -> str | None:
    """The option letter a reply states, or `None` when it states none or several.

    See the module docstring for what counts as stating a letter.
    """
    letters = LETTERS[: len(options)]
    cleaned = _clean(text)
    if not cleaned:
        return None
    listed = _listed(cleaned, options, letters)
    decided, letter = _decide(_tier_one(cleaned, options, letters, listed), letters)
    if decided or listed or _HEDGE.search(cleaned):
        return letter
    return _decide(_tier_two(text, cleaned, options, letters), letters)[1]


# --- TF --------------------------------------------------------------------------------------

_TRUE_WORDS = frozenset(("true", "correct", "accurate"))
_BOTH = re.compile(r"\b(?:true\W*(?:(?:or|and|nor)\W*)?false|false\W*(?:(?:or|and|nor)\W*)?true)\b")
_QUALIFIED = re.compile(
    r"\b(?:not|n[’']t)\s+(?:entirely|necessarily|completely|quite|always|fully|totally|"
    r"exactly|wholly|strictly|100%)\s+(?:true|false|correct|accurate)"
)
_VERDICT = (
    r"(?P<neg>not\s+|n[’']t\s+)?(?P<word>true|false|correct|incorrect|accurate|inaccurate|untrue)\b"
)
_TF_TIER_ONE = tuple(
    re.compile(pattern, re.M)
    for pattern in (
        r"\A(?:(?:final\s+)?(?:answer|verdict)\s*[:\-–—]?\s*)?(?:(?:yes|no|probably|likely|"
        r"definitely|clearly|absolutely)\s*[,.:!\-–—]?\s*)?(?P<word>true|false)\b",
        r"\b(?:statement|claim|assertion|answer|verdict|it|this|that)\s*(?:is|[’']s|would\s+be|"
        r"must\s+be|should\s+be|(?:seems|appears)\s+to\s+be|isn[’']t(?P<isnt>))\s+(?:(?:"
        r"definitely|clearly|indeed|therefore|thus|so|probably|likely|most\s+likely|absolutely|"
        r"actually|entirely|completely)\s+)?" + _VERDICT,
        r"\b(?:answer|verdict)\s*[:\-–—]\s*(?P<word>true|false)\b",
        r"\bi\s*(?:would|[’']d)?\s*(?:say|answer|choose|go\s+with)\s+(?:that\s+it\s+is\s+)?"
        r"(?P<word>true|false)\b",
        r"^(?P<word>true|false)[.!]?$",
        r"[:,.!?\-–—]\s*(?P<word>true|false)[.!]?\s*\Z",
    )
)
_TF_MENTION = re.compile(r"(?P<neg>not\s+|n[’']t\s+)?(?P<word>true|false)\b")


def _polarities(cleaned: str, patterns: Iterable[re.Pattern[str]]) -> set[bool]:
    found: set[bool] = set()
    for pattern in patterns:
        for match in pattern.finditer(cleaned):
            if _UNASSERTED.search(cleaned[: match.start()]):
                continue
            value = match.group("word") in _TRUE_WORDS
            groups = match.groupdict()
            if groups.get("neg") or groups.get("isnt") is not None:
                value = not value
            found.add(value)
    return found


def parse_tf(text: str) -> bool | None:
    """The verdict a reply states (`True`, `**False**`, `The statement is false.`) or `None`.

    See the module docstring for what counts as stating a verdict.
    """
    cleaned = _clean(text).lower()
    if not cleaned or _BOTH.search(cleaned) or _QUALIFIED.search(cleaned):
        return None
    stated = _polarities(cleaned, _TF_TIER_ONE)
    stated |= {
        match.group(2).lower() == "true"
        for match in _BOLD.finditer(text)
        if len(match.group(2)) > 1
    }
    if not stated and not _HEDGE.search(cleaned):
        stated = _polarities(cleaned, (_TF_MENTION,))
    return next(iter(stated)) if len(stated) == 1 else None
