"""Text analysis equal, token for token, to Lucene's English analyzer as Anserini/Pyserini use it for BM25.

Pipeline of Anserini's ``DefaultEnglishAnalyzer.newStemmingInstance("porter")`` (Pyserini's
``get_lucene_analyzer()``; Lucene 9):

1. ``StandardTokenizer``: Unicode word segmentation (UAX #29) with Lucene's emission rules, written
   below as one regular expression over Unicode ``Word_Break`` properties (the ``regex`` module):
   letters and digits run together; ``. ' ’ : ·`` join letters (MidLetter/MidNumLet), ``. , ; ' ’`` join
   digits (MidNum/MidNumLet) — ``U.S``, ``don't``, ``mg·dl``, ``3.5``, ``1,000`` stay whole; combining
   marks and format characters stick to the character before them; ``_`` (ExtendNumLet) links words
   but is never a token alone; super-/subscript digits (``m²``, ``B₁₂``), fractions and other symbols
   split words; each Han or Hiragana character is a token; a run of Thai/Lao/Khmer/Myanmar letters is a
   token; emoji (``©``, ``®``, ``™``, ``↔`` included) are tokens; tokens longer than 255 characters
   are cut into 255-character pieces;
2. ``EnglishPossessiveFilter``: a trailing ``'s``/``’s``/``＇s`` removed;
3. ``LowerCaseFilter``: per-character lower-casing (Java's ``Character.toLowerCase``);
4. ``StopFilter``: Lucene's 33 English stop words;
5. ``PorterStemFilter``: Lucene's ``PorterStemmer``, i.e. Martin Porter's reference C implementation
   with its two departures from the 1980 paper (``-bli → -ble`` instead of ``-abli → -able``, and
   ``-logi → -log``), and words of one or two characters left alone. (Snowball's ``porter`` stemmer,
   the published algorithm, differs: ``anthropology → anthropologi``, ``assembly → assembli``,
   ``vs → v``.)

Example::

    >>> EnglishAnalyzer()("The cats' owner's U.S. visits, in 1,000 days of anthropology vs ecology")
    ['cat', 'owner', 'u.', 'visit', '1,000', 'dai', 'anthropolog', 'vs', 'ecolog']
"""

from __future__ import annotations

from functools import lru_cache

import regex

#: Lucene's ``EnglishAnalyzer.ENGLISH_STOP_WORDS_SET``.
LUCENE_STOPWORDS = frozenset(
    ["a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is", "it", "no", "not",
     "of", "on", "or", "such", "that", "the", "their", "then", "there", "these", "they", "this", "to", "was",
     "will", "with"]
)

#: ``StandardTokenizer.DEFAULT_MAX_TOKEN_LENGTH``: longer tokens are cut into pieces of this length.
MAX_TOKEN_LENGTH = 255

# -- StandardTokenizer (Lucene's StandardTokenizerImpl.jflex, as a regex over Word_Break properties) ----------

_X = r"[\p{WB=Format}\p{WB=Extend}\p{WB=ZWJ}]*"  # WB4: X (Extend | Format | ZWJ)* → X
_LETTER = rf"[\p{{WB=ALetter}}\p{{WB=Hebrew_Letter}}]{_X}"
_HEBREW = rf"\p{{WB=Hebrew_Letter}}{_X}"
_NUMERIC = rf"\p{{WB=Numeric}}{_X}"
_KATAKANA = rf"\p{{WB=Katakana}}{_X}"
_EXTEND_NUM_LET = rf"\p{{WB=ExtendNumLet}}{_X}"
_MID_LETTER = rf"[\p{{WB=MidLetter}}\p{{WB=MidNumLet}}\p{{WB=Single_Quote}}]{_X}"
_MID_NUM = rf"[\p{{WB=MidNum}}\p{{WB=MidNumLet}}\p{{WB=Single_Quote}}]{_X}"
_UNIT = (
    rf"(?:{_KATAKANA}(?:(?:{_EXTEND_NUM_LET})*{_KATAKANA})*"
    rf"|(?:{_HEBREW}(?:\p{{WB=Single_Quote}}{_X}|\p{{WB=Double_Quote}}{_X}{_HEBREW})"
    rf"|{_NUMERIC}(?:(?:(?:{_EXTEND_NUM_LET})*|{_MID_NUM}){_NUMERIC})*"
    rf"|{_LETTER}(?:(?:(?:{_EXTEND_NUM_LET})*|{_MID_LETTER}){_LETTER})*)+)"
)
_WORD = rf"(?:{_EXTEND_NUM_LET})*{_UNIT}(?:(?:{_EXTEND_NUM_LET})+{_UNIT})*(?:{_EXTEND_NUM_LET})*"
_EMOJI_ELEMENT = r"[\p{Emoji}--\p{Emoji_Component}](?:\uFE0F|\p{Emoji_Modifier})?[\p{WB=Extend}\p{WB=Format}]*"
_EMOJI = (
    rf"{_EMOJI_ELEMENT}(?:\u200D{_EMOJI_ELEMENT})*"
    r"|\p{Regional_Indicator}{2}"
    r"|[0-9#*]\uFE0F?\u20E3"
)
_TOKEN = regex.compile(
    rf"{_WORD}"
    rf"|{_EMOJI}"
    rf"|\p{{Script=Han}}{_X}"  # one ideograph per token
    rf"|\p{{Script=Hiragana}}{_X}"  # one hiragana per token
    rf"|(?:\p{{Line_Break=Complex_Context}}{_X})+",  # Thai, Lao, Khmer, Myanmar runs
    flags=regex.V1,
)

#: ``Character.toLowerCase`` where Python's ``str.lower`` gives something else
_JAVA_LOWER = {"\u0130": "i"}


def _lower(token: str) -> str:
    if token.isascii():
        return token.lower()
    return "".join(_JAVA_LOWER.get(c) or (c.lower() if len(c.lower()) == 1 else c) for c in token)


def _tokens(text: str) -> list[str]:
    out = []
    for tok in _TOKEN.findall(text):
        if len(tok) > MAX_TOKEN_LENGTH:
            out += [tok[i:i + MAX_TOKEN_LENGTH] for i in range(0, len(tok), MAX_TOKEN_LENGTH)]
        else:
            out.append(tok)
    return out


# -- Lucene's PorterStemmer -----------------------------------------------------------------------------------


def _cons(b: str, i: int) -> bool:
    ch = b[i]
    if ch in "aeiou":
        return False
    if ch == "y":
        return i == 0 or not _cons(b, i - 1)
    return True


def _m(b: str, j: int) -> int:
    """Porter's measure of ``b[:j + 1]``: the number of vowel-consonant sequences (VC) in ``[C](VC)^m[V]``."""
    pattern = "".join("c" if _cons(b, i) else "v" for i in range(j + 1))
    return len(_VC.findall(pattern))


_VC = regex.compile("v+c+")


def _vowel_in_stem(b: str, j: int) -> bool:
    return any(not _cons(b, i) for i in range(j + 1))


def _double_c(b: str, j: int) -> bool:
    return j >= 1 and b[j] == b[j - 1] and _cons(b, j)


def _cvc(b: str, i: int) -> bool:
    return i >= 2 and _cons(b, i) and not _cons(b, i - 1) and _cons(b, i - 2) and b[i] not in "wxy"


# step 2 (double suffixes) and step 3 (-ic-, -full, -ness ...): by the penultimate / last letter; the first
# suffix that matches decides, replaced only when the stem before it has m() > 0
_STEP2 = {
    "a": (("ational", "ate"), ("tional", "tion")),
    "c": (("enci", "ence"), ("anci", "ance")),
    "e": (("izer", "ize"),),
    "l": (("bli", "ble"), ("alli", "al"), ("entli", "ent"), ("eli", "e"), ("ousli", "ous")),
    "o": (("ization", "ize"), ("ation", "ate"), ("ator", "ate")),
    "s": (("alism", "al"), ("iveness", "ive"), ("fulness", "ful"), ("ousness", "ous")),
    "t": (("aliti", "al"), ("iviti", "ive"), ("biliti", "ble")),
    "g": (("logi", "log"),),
}
_STEP3 = {
    "e": (("icate", "ic"), ("ative", ""), ("alize", "al")),
    "i": (("iciti", "ic"),),
    "l": (("ical", "ic"), ("ful", "")),
    "s": (("ness", ""),),
}
_STEP4 = {
    "a": ("al",), "c": ("ance", "ence"), "e": ("er",), "i": ("ic",), "l": ("able", "ible"),
    "n": ("ant", "ement", "ment", "ent"), "o": ("ion", "ou"), "s": ("ism",), "t": ("ate", "iti"), "u": ("ous",),
    "v": ("ive",), "z": ("ize",),
}


def _replace(b: str, rules, key: str) -> str:
    for suffix, repl in rules.get(key, ()):
        if b.endswith(suffix):
            stem = b[: len(b) - len(suffix)]
            return stem + repl if _m(stem, len(stem) - 1) > 0 else b
    return b


def porter_stem(word: str) -> str:
    """Lucene's ``PorterStemmer`` on a lower-cased word (Porter's C reference version, with its departures)."""
    b = word
    if len(b) <= 2:
        return b
    # step 1ab: plurals and -ed / -ing
    if b[-1] == "s":
        if b.endswith("sses"):
            b = b[:-2]
        elif b.endswith("ies"):
            b = b[:-2]
        elif b[-2] != "s":
            b = b[:-1]
    if b.endswith("eed"):
        if _m(b, len(b) - 4) > 0:
            b = b[:-1]
    else:
        for suffix in ("ed", "ing"):
            if b.endswith(suffix) and _vowel_in_stem(b, len(b) - len(suffix) - 1):
                b = b[: len(b) - len(suffix)]
                if b.endswith("at") or b.endswith("bl") or b.endswith("iz"):
                    b += "e"
                elif _double_c(b, len(b) - 1):
                    if b[-1] not in "lsz":
                        b = b[:-1]
                elif _m(b, len(b) - 1) == 1 and _cvc(b, len(b) - 1):
                    b += "e"
                break
            if b.endswith(suffix):
                break
    # step 1c: y → i when there is another vowel in the stem
    if b.endswith("y") and _vowel_in_stem(b, len(b) - 2):
        b = b[:-1] + "i"
    if len(b) <= 1:
        return b
    b = _replace(b, _STEP2, b[-2])
    b = _replace(b, _STEP3, b[-1])
    # step 4: -ant, -ence, ... removed when m() > 1
    if len(b) >= 2:
        for suffix in _STEP4.get(b[-2], ()):
            if b.endswith(suffix):
                j = len(b) - len(suffix) - 1
                if suffix == "ion" and not (j >= 0 and b[j] in "st"):
                    continue
                if _m(b, j) > 1:
                    b = b[: j + 1]
                break
    # step 5: final -e, and -ll → -l, when m() > 1
    whole, k = b, len(b) - 1  # m() here counts over the word as it was before this step
    if b[k] == "e":
        a = _m(whole, k)
        if a > 1 or (a == 1 and not _cvc(b, k - 1)):
            b = b[:-1]
    if b[-1] == "l" and _double_c(b, len(b) - 1) and _m(whole, k) > 1:
        b = b[:-1]
    return b


class EnglishAnalyzer:
    """Callable ``text → list of terms``; stop words and stemming can be switched off.

    ``stemmer="porter"`` (the default) is Lucene's Porter stemmer; any other name is a Snowball stemmer of
    PyStemmer (``"english"`` is Porter2).
    """

    def __init__(self, stopwords: frozenset[str] | None = LUCENE_STOPWORDS, stemmer: str | None = "porter"):
        self.stopwords = stopwords or frozenset()
        self.stemmer = stemmer
        if stemmer == "porter":
            stem = porter_stem
        elif stemmer:
            import Stemmer

            stem = Stemmer.Stemmer(stemmer).stemWord
        else:
            stem = None
        self._stem = lru_cache(maxsize=1 << 20)(stem) if stem else (lambda w: w)

    def tokenize(self, text: str) -> list[str]:
        """Word tokens with possessives removed and lower-cased (no stop words removed, no stemming)."""
        out = []
        for tok in _tokens(text):
            if len(tok) >= 2 and tok[-2] in "'\u2019\uff07" and tok[-1] in "sS":
                tok = tok[:-2]
            out.append(_lower(tok))
        return out

    def __call__(self, text: str) -> list[str]:
        stop, stem = self.stopwords, self._stem
        return [stem(tok) for tok in self.tokenize(text) if tok not in stop]

    def describe(self) -> dict:
        return {"tokenizer": "lucene-standard", "stopwords": "lucene-english" if self.stopwords else None,
                "stemmer": ("lucene-porter" if self.stemmer == "porter" else self.stemmer) if self.stemmer else None}
