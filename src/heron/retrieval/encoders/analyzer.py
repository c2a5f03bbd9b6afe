"""Text analysis comparable to Lucene's English analyzer (the one Anserini/Pyserini use for BM25).

Pipeline, as Lucene's ``EnglishAnalyzer``:

1. tokenise on Unicode word boundaries (UAX #29 as Lucene's ``StandardTokenizer`` does: letters and
   digits run together; ``. ' ’ :`` join letters, ``. , ; ' ’`` join digits — ``U.S``, ``don't``,
   ``3.5``, ``1,000`` stay whole; a lone CJK ideograph is a token);
2. remove English possessives (a trailing ``'s``);
3. lower-case;
4. drop Lucene's 33 English stop words;
5. Porter stemming (Snowball's implementation of the original Porter algorithm).

Example::

    >>> EnglishAnalyzer()("The cats' owner's U.S. visits, in 1,000 days")
    ['cat', 'owner', 'u.', 'visit', '1,000', 'dai']
"""

from __future__ import annotations

import re
from functools import lru_cache

import Stemmer

#: Lucene's ``EnglishAnalyzer.ENGLISH_STOP_WORDS_SET``.
LUCENE_STOPWORDS = frozenset(
    ["a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is", "it", "no", "not",
     "of", "on", "or", "such", "that", "the", "their", "then", "there", "these", "they", "this", "to", "was",
     "will", "with"]
)

_LETTER = r"[^\W\d_]"
_CJK = r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3040-\u30ff]"
_TOKEN = re.compile(
    rf"{_CJK}"  # one ideograph or kana per token
    rf"|(?:(?!{_CJK})\w)+"  # a run of word characters
    rf"(?:(?:(?<={_LETTER})[.'\u2019:](?={_LETTER})|(?<=\d)[.,;'\u2019](?=\d))(?:(?!{_CJK})\w)+)*"
)
_POSSESSIVE = re.compile(r"['\u2019][sS]$")


class EnglishAnalyzer:
    """Callable ``text → list of terms``; stop words and stemming can be switched off."""

    def __init__(self, stopwords: frozenset[str] | None = LUCENE_STOPWORDS, stemmer: str | None = "porter"):
        self.stopwords = stopwords or frozenset()
        self._stemmer = Stemmer.Stemmer(stemmer) if stemmer else None
        self._stem = lru_cache(maxsize=1 << 20)(self._stemmer.stemWord) if self._stemmer else (lambda w: w)

    def tokenize(self, text: str) -> list[str]:
        """Word tokens with possessives removed and lower-cased (no stop words removed, no stemming)."""
        return [_POSSESSIVE.sub("", tok).lower() for tok in _TOKEN.findall(text)]

    def __call__(self, text: str) -> list[str]:
        stop, stem = self.stopwords, self._stem
        return [stem(tok) for tok in self.tokenize(text) if tok and tok not in stop]

    def describe(self) -> dict:
        return {"tokenizer": "uax29-approx", "stopwords": "lucene-english" if self.stopwords else None,
                "stemmer": "porter" if self._stemmer else None}
