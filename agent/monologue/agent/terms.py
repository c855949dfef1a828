"""Search terms: how a log line and a question become words to match.

Both stores index the same `terms` column, made here, with a plain
whitespace tokenizer, so LanceDB and Weaviate match exactly the same words and
the rules live in one place. A general-purpose text analyzer cuts log lines
badly: it splits `10.1.2.3:8080`, `blk_-42` or `task 28.0` into parts that
match everywhere, and knows no `finished` from `completed`. So, per token:

- identifiers are kept whole AND split (`10.1.2.3:8080` -> itself, `10.1.2.3`,
  `8080`; `dfs.DataNode$PacketResponder` -> itself and `datanode`,
  `packet`, `respond`...), but numbers-with-dots (`28.0`, versions, IPs)
  are never split into their digits, and neither are dates;
- times of day (`20:11:10`, `ts=2026-11-02T09:00:00.302Z`) are not terms:
  nearly one per line, they were a third of a generated log's distinct terms,
  which is what the full-text index's build time grows with; a question's
  time is its time range;
- words are lower-cased and stemmed (Snowball English: `failures` = `failure`);
- each pair of adjacent tokens is also a term (`task~28.0`), so a question
  naming "task 28.0" prefers that line over "task 0.0 in stage 28.0";
  words and numbers pair, identifiers (`req-dd73cf`, `blk_-42`) and dates
  do not: an identifier is distinctive alone, and its pairs would add a
  term per occurrence (1M generated lines: 3.75M distinct terms before
  these two rules, 1.4M after; the index builds in 9.7 s instead of 25);
- a few kinds of value get a type term (`#port`, `#ip`, `#duration`,
  `#size`, `#code`, `#path`) that the question's wording asks for ("which
  port", "how long", "which function"), so a line holding such a value wins
  over its siblings that do not;
- a line's terms are a set: repeating a word in a line says nothing more.

Query words no template uses (say "completed") are expanded with the nearest
template words by meaning ("finished"): see Vocabulary.
"""

from __future__ import annotations

import multiprocessing
import os
import re
from functools import lru_cache
from typing import Callable

import numpy as np
import snowballstemmer

STOP_WORDS = frozenset("""
a an the of to in on for from by with at is are was were be been being do does did what which who whom
whose when where why how this that these those it its as and or not no there their than then so such can
could should would will may might must shall i you he she we they me my your our his her them us about
into over under after before during up down out off again further once here all any both each few more
most other some own same too very just if because until while
""".split())

_TOKEN = re.compile(r"[^\s,;()\"'<>{}\[\]]+")
_EDGE = ".:!?*#"
_PIECES = re.compile(r"[:/=@|$]+")  # separators inside identifiers: host:port, a/b, k=v
_NUMERIC = re.compile(r"[\d.:/\-_]+")  # numbers, IPs, times, dates
_ALNUM = re.compile(r"[^a-z0-9]+")
_CAMEL = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+")
_LOWER_UPPER = re.compile(r"[a-z][A-Z]|[A-Z]{2}[a-z]")
_STEMMER = snowballstemmer.stemmer("english")

# A time of day, alone or in an ISO timestamp, anywhere in a token (ts=...).
_TIME = re.compile(r"\d{4}-\d\d-\d\dt[\d:.,]+(?:z|[+-][\d:]+)?|(?<![\d.:])\d{1,2}:\d\d(?::\d\d(?:[.,]\d+)?)?(?![\d:])",
                   re.I)
_DATE = re.compile(r"\d{2,4}[/-]\d\d?[/-]\d{1,4}")
_IP = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}")
_HOST_PORT = re.compile(r"(?:\d{1,3}(?:\.\d{1,3}){3}|[a-z][\w-]*(?:\.[\w-]+)*):\d{2,5}")
_CODE = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)+:?")  # snake_case_name: (a function in most logs)
_PATH = re.compile(r"(?:/[\w.\-]+){2,}/?")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_VALUE_WITH_UNIT = re.compile(r"(-?\d+(?:\.\d+)?)([a-z]+)")
DURATION_UNITS = frozenset("ns us µs ms s sec secs second seconds millisecond milliseconds min mins minute minutes h hour hours".split())
SIZE_UNITS = frozenset("b kb mb gb tb kib mib gib tib byte bytes".split())

# Wording of a question that asks for a value of a type; lines holding such a
# value carry the type term (see _token for how a line's values are typed).
ASKED_TYPES = [(name, re.compile(pattern, re.I)) for name, pattern in {
    "#ip": r"\b(?:ip|ips|address|addresses|host|hosts|hostname)\b",
    "#port": r"\bports?\b",
    "#duration": r"\bhow long\b|\bduration\b|\blatency\b|\btime (?:did|does|it) ",
    "#size": r"\bhow (?:large|big)\b|\bsize\b|\bbytes\b|\bhow much memory\b",
    "#code": r"\b(?:function|method|procedure|routine|class)\b",
    "#path": r"\b(?:path|file|directory|folder)\b",
}.items()]


@lru_cache(maxsize=1 << 16)
def stem(word: str) -> str:
    return _STEMMER.stemWord(word)


@lru_cache(maxsize=1 << 18)
def _token(raw: str) -> tuple[tuple[str, ...], tuple[str, ...], str, str | None]:
    """(terms, type terms, kind, head) of one whitespace token, cached: logs repeat their tokens.

    kind is "time", "number", "duration-unit", "size-unit", "port" or "": it
    types a value made of two tokens ("16 ms", "port 22"), in _analyze.
    head is the term it pairs with its neighbours as, or None (see _head).
    """
    code = raw.endswith(":") and _CODE.fullmatch(raw) is not None
    timed = _TIME.search(raw) is not None
    if timed:  # what is left of it (ts=...: ts) is still a token, paired with nothing
        raw = _TIME.sub("", raw).rstrip("=")
    raw = raw.strip(_EDGE)
    low = raw.lower()
    if not low:
        return (), (), "time" if timed else "", None
    terms: list[str] = []
    types: list[str] = ["#code"] if code else []
    if _IP.search(low):
        types.append("#ip")
    if _HOST_PORT.fullmatch(low.lstrip("/")):
        types.append("#port")
    if _PATH.fullmatch(low):
        types.append("#path")
    if (unit := _VALUE_WITH_UNIT.fullmatch(low)) and unit.group(2) in DURATION_UNITS:
        types.append("#duration")
    elif unit and unit.group(2) in SIZE_UNITS:
        types.append("#size")
    if _NUMERIC.fullmatch(low) and "." not in low:
        terms.append(low)  # a date or plain number: whole only
    else:
        pieces = [p for p in _PIECES.split(low) if p]
        if pieces != [low]:
            terms.append(low)
        for piece in pieces:
            piece = piece.strip(".-_")
            if not piece:
                continue
            if _NUMERIC.fullmatch(piece):
                terms.append(piece)  # 28.0, 10.1.2.3, -42: never split into digits
                continue
            parts = [p for p in _ALNUM.split(piece) if p]
            if len(parts) > 1:
                terms.append(piece)
            terms += [stem(p) if p.isalpha() else p for p in parts]
        if _LOWER_UPPER.search(raw):  # camelCase: its words too
            terms += [stem(c.lower()) for c in _CAMEL.findall(raw)]
    kind = ("time" if timed or _DATE.fullmatch(low)
            else "number" if _NUMBER.fullmatch(low) else "duration-unit" if low in DURATION_UNITS
            else "size-unit" if low in SIZE_UNITS else "port" if low == "port" else "")
    terms = list(dict.fromkeys(t for t in terms if t not in STOP_WORDS))
    return tuple(terms), tuple(types), kind, _head(terms, kind)


_PAIR_TYPES = {("number", "duration-unit"): "#duration", ("number", "size-unit"): "#size",
               ("port", "number"): "#port"}


def _head(terms: list[str], kind: str) -> str | None:
    """A token's first term, if it pairs: a word or a number (28.0, an IP).
    A time or date next to a word says nothing about the event, and an
    identifier that mixes letters and digits is distinctive alone: their
    pairs would be nearly one per line."""
    if not terms or kind == "time":
        return None
    head = terms[0]
    return head if not any(c.isdigit() for c in head) or _NUMERIC.fullmatch(head) else None


def _analyze(text: str) -> tuple[list[str], list[str]]:
    """(terms with neighbour pairs, type terms of the values held) of a text."""
    terms: list[str] = []
    types: list[str] = []
    heads: list[str | None] = []
    previous = ""
    for raw in _TOKEN.findall(text):
        token, token_types, kind, head = _token(raw)
        terms += token
        types += token_types
        if (pair := _PAIR_TYPES.get((previous, kind))) is not None:
            types.append(pair)
        previous = kind
        heads.append(head)
    terms += [f"{a}~{b}" for a, b in zip(heads, heads[1:]) if a and b]
    return terms, types


def line_terms(text: str) -> str:
    """The `terms` column of a (redacted) line: unique terms, space-separated."""
    terms, types = _analyze(text)
    return " ".join(dict.fromkeys(terms + types))


class TermsPool:
    """line_terms of large batches in worker processes, while the caller goes on with its own work.

    Terms cost about as much as the rest of indexing (mining, redaction,
    writing): on the indexer's big batches the other cores make them free.
    """

    MIN_BATCH = 20_000  # below this, a process round trip costs more than it saves

    def __init__(self, workers: int | None = None):
        self.workers = workers or os.cpu_count() or 1
        self._pool = None

    def submit(self, lines: list[str]) -> Callable[[], list[str]]:
        """Starts the work; the returned function waits for and returns the terms."""
        if len(lines) < self.MIN_BATCH or self.workers < 2:
            done = [line_terms(line) for line in lines]
            return lambda: done
        if self._pool is None:
            self._pool = multiprocessing.get_context("forkserver").Pool(self.workers)
        pending = self._pool.map_async(line_terms, lines, chunksize=max(1000, len(lines) // (4 * self.workers)))
        return pending.get

    def close(self) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None


# "How many", "how often": the question's form, not its subject ("too many
# connections" is no answer to "how many logins failed?").
_HOW = re.compile(r"\bhow (?:many|much|often|long)\b", re.I)


def query_terms(question: str) -> list[str]:
    """A question's terms, plus the type terms of the values it asks for."""
    terms, _ = _analyze(_HOW.sub(" ", question))
    return list(dict.fromkeys(terms + [name for name, pattern in ASKED_TYPES if pattern.search(question)]))


def identifier_term(value: str) -> str | None:
    """The term a line holds for an identifier token (`req-2b47a750a7`), kept whole."""
    found = _token(value)[0]
    return found[0] if found else None


def content_words(question: str) -> list[str]:
    """Plain words of a question that may carry its meaning (for expansion)."""
    return list(dict.fromkeys(w for w in re.findall(r"[a-z]{3,}", question.lower()) if w not in STOP_WORDS))


class Vocabulary:
    """The words of a Space's templates, with a vector each, for query expansion.

    A question word that no template uses ("completed", "large") is replaced
    by its nearest template words by meaning ("finished", "size") when they
    are close enough. MiniLM measured on words: completed~finished 0.77,
    large~size 0.81, while unrelated pairs stay under 0.6.
    """

    THRESHOLD = 0.7  # tuned on LogQA train
    PER_WORD = 2

    def __init__(self):
        self.words: list[str] = []
        self._known: set[str] = set()
        self._vectors = np.zeros((0, 0), np.float32)

    def __contains__(self, word: str) -> bool:
        return word in self._known

    def add(self, words: list[str], vectors: np.ndarray) -> None:
        if not words:
            return
        vectors = np.asarray(vectors, np.float32)
        vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        self._vectors = vectors if not self.words else np.vstack([self._vectors, vectors])
        self.words += words
        self._known.update(words)

    def unknown_all(self, words: list[str]) -> list[str]:
        return [w for w in words if w not in self._known]

    def expand(self, vectors: np.ndarray) -> list[str]:
        """Stems of the template words nearest to each of these word vectors."""
        if not self.words or len(vectors) == 0:
            return []
        vectors = np.asarray(vectors, np.float32)
        vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        similarity = vectors @ self._vectors.T
        out = []
        for row in similarity:
            for j in np.argsort(-row)[: self.PER_WORD]:
                if row[j] >= self.THRESHOLD:
                    out.append(stem(self.words[j]))
        return list(dict.fromkeys(out))


def template_words(template: str) -> list[str]:
    return content_words(template.replace("<*>", " "))
