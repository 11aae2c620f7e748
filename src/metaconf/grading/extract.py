"""Find the answer in a model's free text and grade it, per answer type (see docs/grading.md for the rules).

Every extractor reads only the answer region (`answer_region`: the text before a "Confidence:" line), never
raises on arbitrary text, and returns None when it finds no answer.
"""

from __future__ import annotations

import re

from metaconf.data.schema import LETTERS, Question
from metaconf.grading.normalize import (
    answer_region,
    bounded_text,
    canonical_number,
    find_number_words,
    find_numbers,
    normalize_open,
    numbers_equal,
    parse_number,
)

# How far after an "answer" cue its number is looked for (characters), and how many of the last cues are tried.
CUE_WINDOW = 200
MAX_CUES = 50
# An open answer is "short" (so a gold alias found inside it counts) when it has at most this many tokens.
SHORT_ANSWER_TOKENS = 10

# ------------------------------------------------------------------------------------------ multiple choice
_CONNECTOR = r"(?:\s+(?:is|was|would\s+be|should\s+be|will\s+be|must\s+be)\s*[:=]?|\s*[:=]|\s+-(?=\s))\s*"
# "answer is B", "Answer: (b)", "The correct answer would be C", "answer = D", "answer is option B"
# an answer's number in metaconf's pairwise format ("Answer 2: B") is a label, not the answer
_ANSWER_INDEX = r"(?:\s+\d\s*(?=[:=]))?"
_MC_ANSWER_CUE = re.compile(r"(?i)\banswer" + _ANSWER_INDEX + _CONNECTOR + r"(?:option\s+|choice\s+)?")
# "B is correct", "(B) is the right answer" (the match starts at the letter)
_MC_RIGHT_CUE = re.compile(
    r"(?i)(?<![\w'\u2019])(?=[\[(]?[A-Za-z][\])]?\s+(?:is|was)\s+(?:the\s+)?(?:correct|right|best|true)\b)"
)
# "correct option is B", "the best choice would be C", "Option: B" (after the answer cues)
_MC_OPTION_CUE = re.compile(r"(?i)\b(?:option|choice)" + _CONNECTOR)
# "option B", "choice (c)", "the answer E" (no connecting word; not "option A is wrong")
_MC_WEAK_CUE = re.compile(
    r"(?i)\b(?:option|choice|answer)\s+(?=[\[(]?[A-Za-z]\b)(?!.{0,12}\b(?:is|are)\s+(?:not|in|wrong))"
)
_LETTER_TOKEN = re.compile(r"(?P<open>[\[(])?(?P<letter>[A-Za-z])(?![\w'\u2019])(?P<close>[\])])?(?P<punct>[.:,;]?)")
# an uppercase letter standing alone and closed by punctuation or the end: "... we are seeking is C."
_STANDALONE_LETTER = re.compile(r"(?<![\w'\u2019.])([A-Z])(?:[.):,;](?!\w)|$)")
# the indent is whitespace other than a line break: with `\s*`, the scan from every line start ran across all the
# following blank lines, quadratic in "B" + "\n" * k + "x" (1.1 s at 10k characters)
_OPTION_LINE = re.compile(r"(?m)^[^\S\n]*[\[(]?([A-Za-z])[\].):]\s+\S")
_LEADING_PREFIX = re.compile(
    r"(?i)(?:(?:final|correct)\s+)?(?:answer|response)\s*(?:[:\-]|is\b)\s*|the\s+(?:final\s+|correct\s+)?"
    r"answer\s+(?:is|would\s+be)\s*:?\s*|a\s*:\s*(?=\S)"
)
_SPACES = re.compile(r"\s*")


def _strip_prefixes(text: str) -> str:
    """`text` without its leading "Answer:" / "The answer is" prefixes (any number of them), in linear time."""
    pos = _SPACES.match(text).end()
    while True:
        m = _LEADING_PREFIX.match(text, pos)
        if not m or m.end() == pos:
            return text[pos:]
        pos = _SPACES.match(text, m.end()).end()


_LOOKAHEAD = 200
_DASH_OR_END = re.compile(r"\s*(?:[-\u2013\u2014]\s|$)")


def _letter_at(text: str, pos: int, q: Question, letters: list[str]) -> str | None:
    """The choice letter written at `pos`, or None when the letter there is a word ("A is...", "a", "I think").

    A letter counts when it is bracketed ("(b)", "B)"), followed by punctuation or the end ("B.", "B:"), or, as
    an uppercase letter that is not also an English word (anything but A and I), followed by more text
    ("B protons", "B because"). "A"/"I"/lowercase letters followed by a word count only when that word starts
    the option's own text ("a proton" for option A "Proton") or says the letter is right ("A is correct").
    """
    m = _LETTER_TOKEN.match(text, pos)
    if not m:
        return None
    letter = m.group("letter")
    if letter.upper() not in letters:
        return None
    after = text[m.end() : m.end() + _LOOKAHEAD]  # bounded: this runs once per answer cue
    delimited = bool(m.group("close") or m.group("punct") or (m.group("open") and m.group("close")))
    if m.group("punct") and m.group("punct") in ".:" and re.match(r"[A-Za-z]\.", after):
        return None  # "e.g.", "i.e."
    if delimited or after.startswith("\n") or _DASH_OR_END.match(text, m.end()):
        return letter.upper()
    if letter.isupper() and letter not in "AI":
        return letter.upper()
    if re.match(r"\s+(?:is|was)\s+(?:the\s+)?(?:correct|right|best|true)\b", after, re.IGNORECASE):
        return letter.upper()
    idx = letters.index(letter.upper())
    option = normalize_open(q.choices[idx]) if q.choices and idx < len(q.choices) else ""
    following = normalize_open(after[: len(option) + 20] if option else "")
    if option and (following == option or following.startswith(option + " ")):
        return letter.upper()
    return None


def _lists_options(region: str, q: Question) -> bool:
    """True when the text lays out the lettered options (the model echoed them): lines starting with three or
    more different option letters, or with all of them when there are fewer than three options."""
    listed = {m.group(1).upper() for m in _OPTION_LINE.finditer(region)}
    return len(listed) >= min(3, max(2, len(q.choices or []))) and len(listed) >= 2


def _option_text_match(region: str, q: Question, letters: list[str]) -> str | None:
    """The one option whose normalised text is the answer or appears as a whole-word span in it."""
    if not q.choices:
        return None
    first = normalize_open(_strip_prefixes(region).split("\n", 1)[0])
    options = [normalize_open(c) for c in q.choices[: len(letters)]]
    exact = [i for i, o in enumerate(options) if o and o == first]
    if len(exact) == 1:
        return letters[exact[0]]
    padded = f" {normalize_open(region)} "
    inside = [i for i, o in enumerate(options) if o and f" {o} " in padded]
    # drop an option whose text is part of another matched option's text ("Paris" inside "Paris, Texas")
    inside = [i for i in inside if not any(j != i and f" {options[i]} " in f" {options[j]} " for j in inside)]
    return letters[inside[0]] if len(inside) == 1 else None


def extract_mc(text: str, q: Question) -> str | None:
    """The chosen letter ("B"), trying in order: the whole answer is a letter; the last answer cue ("answer is
    B", "Answer: (b)", "B is correct"); the last option cue ("correct option is D"); a leading letter ("B.
    protons", "(b)", "B) ..."); "option B" / "answer B"; the option's text without its letter; the one
    bracketed letter anywhere ("(B)"), else the one uppercase letter standing alone before punctuation or the
    end ("... we are seeking is C."). Rules in full: docs/grading.md."""
    letters = q.choice_letters() or list(LETTERS)
    region = answer_region(text)
    if not region:
        return None
    whole = re.fullmatch(r"[\[(]?([A-Za-z])[\])]?[.:]?", region)
    if whole and whole.group(1).upper() in letters:
        return whole.group(1).upper()
    strong = sorted(
        [m.end() for m in _MC_ANSWER_CUE.finditer(region)] + [m.start() for m in _MC_RIGHT_CUE.finditer(region)]
    )
    for positions in (strong, [m.end() for m in _MC_OPTION_CUE.finditer(region)]):
        for pos in reversed(positions):
            found = _letter_at(region, pos, q, letters)
            if found:
                return found
    if not _lists_options(region, q):
        lead = re.match(r"\s*(?:\d{1,2}[.)]\s+)?", region)  # "B. ...", also numbered: "1. B. ..."
        found = _letter_at(region, lead.end() if lead else 0, q, letters)
        if found:
            return found
    for m in _MC_WEAK_CUE.finditer(region):
        found = _letter_at(region, m.end(), q, letters)
        if found:
            return found
    if _lists_options(region, q):
        return None
    by_text = _option_text_match(region, q, letters)
    if by_text:
        return by_text
    bracketed = {m.group(1).upper() for m in re.finditer(r"[\[(]([A-Za-z])[\])]", region)} & set(letters)
    if bracketed:
        return bracketed.pop() if len(bracketed) == 1 else None
    standalone = {m.group(1) for m in _STANDALONE_LETTER.finditer(region)} & set(letters)
    return standalone.pop() if len(standalone) == 1 else None


# -------------------------------------------------------------------------------------------------- numeric
_NUM_ANSWER_CUE = re.compile(
    r"(?i)\banswer\b"
    + _ANSWER_INDEX
    + r"\s*(?:is|would\s+be|will\s+be|should\s+be|equals)?\s*(?:[:=]|is)?\s*(?:approximately\s+|about\s+)?"
)
_BOXED = re.compile(r"\\boxed\s*\{([^{}]*(?:\{[^{}]*\}[^{}]*)*)\}")
_CONFIDENT_PCT = re.compile(r"(?i)\s*(?:%|percent)?\s*(?:confident|sure|certain|likely|chance|probability)")


def _first_number(segment: str) -> str | None:
    if "=" in segment:
        segment = segment[segment.rindex("=") + 1 :]
    numbers = find_numbers(segment)
    if numbers:
        return canonical_number(numbers[0][2])
    words = find_number_words(segment)
    if words and words[0][0] <= 3:  # "The answer is twelve."; not "one of them"
        return canonical_number(words[0][2])
    return None


def extract_numeric(text: str, q: Question | None = None) -> str | None:
    """A canonical number string ("1234", "0.75", "-3", "1/3"), trying in order: after the last "####";
    in the last \\boxed{}; after the last "answer" cue (up to the line's end, after its last "="); the last
    number of the text (ignoring "90% confident"). "1,234", "$1,234.00", 3/4, \\frac{3}{4}, 1e3 and "75%" (read
    as 75) are understood; a lone number word ("twelve") when no digit appears."""
    region = answer_region(text)
    if not region:
        return None
    if "####" in region:
        found = _first_number(region[region.rindex("####") + 4 :].split("\n", 1)[0])
        if found:
            return found
    boxed = _BOXED.findall(region)
    if boxed:
        found = _first_number(boxed[-1])
        if found:
            return found
    for m in reversed(list(_NUM_ANSWER_CUE.finditer(region))[-MAX_CUES:]):
        # the cue's sentence, read within a bounded window: rescanning the rest of the text after every cue
        # would make a text full of cues quadratic
        window = region[m.end() : m.end() + CUE_WINDOW]
        found = _first_number(re.split(r"\n|[.;!?](?:\s|$)", window, maxsplit=1)[0])
        if found:
            return found
    numbers = [n for n in find_numbers(region) if not _CONFIDENT_PCT.match(region, n[1])]
    if numbers:
        return canonical_number(numbers[-1][2])
    value = parse_number(_strip_prefixes(region).split("\n", 1)[0])
    return canonical_number(value) if value is not None else None


# ----------------------------------------------------------------------------------------------- open-ended
def extract_open(text: str, q: Question | None = None) -> str | None:
    """The normalised first line of the answer, after dropping "Answer:" / "The answer is" prefixes."""
    region = _strip_prefixes(answer_region(text))
    for line in region.split("\n"):
        normalized = normalize_open(_strip_prefixes(line))
        if normalized:
            return normalized
    return None


# -------------------------------------------------------------------------------------------------- boolean
_BOOL_WORDS = {"yes": "yes", "true": "yes", "no": "no", "false": "no"}
_BOOL_TOKEN = re.compile(r"(?i)\b(?P<neg>(?:not|isn't|is\s+not)\s+)?(?P<word>yes|no|true|false)\b(?!-)")
_BOOL_CUE = re.compile(r"(?i)\banswer\b" + _ANSWER_INDEX + r"\s*(?:is|would\s+be)?\s*[:=]?\s*")


def boolean_word(text: str, words: dict[str, str] | None = None) -> str | None:
    """ "yes"/"no" for the first yes/no/true/false word of `text` ("not true" is "no", "not false" "yes")."""
    table = words or _BOOL_WORDS
    pattern = (
        _BOOL_TOKEN
        if words is None
        else re.compile(
            r"(?i)\b(?P<neg>(?:not|isn't|is\s+not)\s+)?(?P<word>" + "|".join(map(re.escape, table)) + r")\b(?!-)"
        )
    )
    m = pattern.search(text)
    if not m:
        return None
    value = table[m.group("word").lower()]
    if m.group("neg") and m.group("word").lower() not in ("yes", "no"):
        value = "no" if value == "yes" else "yes"
    return value


def extract_boolean(text: str, q: Question | None = None) -> str | None:
    """ "yes" or "no": the word right after the last "answer" cue, else the first yes/no/true/false word."""
    region = answer_region(text)
    for m in reversed(list(_BOOL_CUE.finditer(region))):
        found = _BOOL_TOKEN.match(region, m.end())
        if found:
            return boolean_word(found.group(0))
    return boolean_word(region)


# ------------------------------------------------------------------------------------------------ dispatch
_EXTRACTORS = {"mc": extract_mc, "numeric": extract_numeric, "open": extract_open, "boolean": extract_boolean}


def extract_answer(text: str, question: Question) -> str | None:
    """The normalised answer in a model's text: a letter (mc), a canonical number string (numeric), normalised
    text (open), "yes"/"no" (boolean); None when no answer is found."""
    try:
        extractor = _EXTRACTORS[question.answer_type]
    except KeyError:
        from metaconf.errors import DataError

        raise DataError(f"question {question.id}: unknown answer_type {question.answer_type!r}") from None
    return extractor(bounded_text(text if text is not None else ""), question)


def answer_matches(answer: str | None, question: Question) -> bool:
    """Whether an already extracted answer (or any short answer string) matches the question's gold answers."""
    if answer is None:
        return False
    answer = bounded_text(answer)
    kind = question.answer_type
    if kind == "mc":
        letter = answer.strip().upper() if re.fullmatch(r"\s*[A-Za-z]\s*", answer) else extract_mc(answer, question)
        return letter is not None and letter in {g.strip().upper() for g in question.answers}
    if kind == "numeric":
        value = parse_number(answer)
        if value is None:
            extracted = extract_numeric(answer)
            value = parse_number(extracted) if extracted else None
        if value is None:
            return False
        golds = [parse_number(g) for g in question.answers]
        return any(g is not None and numbers_equal(value, g) for g in golds)
    if kind == "open":
        return open_matches(answer, question.answers)
    if kind == "boolean":
        word = boolean_word(answer)
        golds = {boolean_word(g) or normalize_open(g) for g in question.answers}
        return word is not None and word in golds
    extract_answer(answer, question)  # raises the one-line error for an unknown type
    return False


def open_matches(answer: str, aliases: list[str]) -> bool:
    """Normalised equality with any alias, or, for a short answer (<= SHORT_ANSWER_TOKENS tokens), an alias
    appearing in it as a whole-word span."""
    normalized = normalize_open(answer)
    if not normalized:
        return False
    short = len(normalized.split()) <= SHORT_ANSWER_TOKENS
    for alias in aliases:
        gold = normalize_open(alias)
        if gold and (gold == normalized or (short and f" {gold} " in f" {normalized} ")):
            return True
    return False


def is_correct(text: str, question: Question) -> bool:
    """Whether a model's raw answer text is right: extract, then match against the gold answers."""
    return answer_matches(extract_answer(text, question), question)
