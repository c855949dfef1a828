"""An Agent: recall from its Spaces, prompt, generate, cite.

One code path for both modes: the Spaces' memory may be LanceDB or Weaviate,
the models in process or behind a model server; the Agent only sees the
VectorStore, Embedder and Generator interfaces.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Iterator

from . import prompt as prompts
from .embedder import Embedder
from .generator import Generator
from .memory import Hit
from .recall import SpaceMemory, TemplateStat, recall
from .terms import content_words
from .timewords import named_range

log = logging.getLogger("monologue.agent")
MAX_EXPANDED_WORDS = 8  # question words embedded for expansion (one batch with the question)
# A question that points back at an earlier one ("when did it start?", "which
# pods logged those?", "and yesterday?") has no subject of its own to search by.
_REFERS_BACK = re.compile(r"^\W*(?:and|also|what about|how about)\b"
                          r"|\b(?:it|its|they|them|their|those|these|this|that|same)\b", re.I)


def refers_back(question: str) -> bool:
    return _REFERS_BACK.search(question) is not None


class SpaceNotAllowed(PermissionError):
    pass


@dataclass
class Citation:
    number: int
    hit: Hit
    cited: bool


@dataclass
class Answer:
    question: str
    text: str
    citations: list[Citation]
    stats: list[TemplateStat]
    recall_ms: float = 0.0
    prompt_tokens: int = 0
    generation_ms: float = 0.0
    completion_tokens: int = 0
    unsupported_figures: list[str] = field(default_factory=list)  # see prompt.unsupported_figures
    since_ns: int | None = None  # the range the answer covers: the request's, or the question's (timewords)
    until_ns: int | None = None


class AnswerLog:
    """Every answer as one JSON line, so agents' outputs can flow back through Loki."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout
        self._lock = threading.Lock()

    def write(self, agent: str, answer: Answer, latency_ms: float) -> None:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "level": "info", "logger": "monologue.answers", "msg": "answer", "agent": agent,
            "question": answer.question,
            "cited_line_ids": [c.hit.line_id for c in answer.citations if c.cited],
            "recalled_line_ids": [c.hit.line_id for c in answer.citations],
            "latency_ms": round(latency_ms, 1),
        }
        if answer.unsupported_figures:  # how often a model makes figures up, for whoever watches
            entry["unsupported_figures"] = answer.unsupported_figures
        with self._lock:
            self.stream.write(json.dumps(entry) + "\n")
            self.stream.flush()


class LoopGuard:
    """Ends an answer at its first line that repeats an earlier one.

    A small model can fall into a loop ("- Grace (27)", "- Alice (27)",
    "- Grace (27)", ... until the token budget is spent, seen in the demo).
    A line repeated word for word adds nothing, so generation stops there,
    and the answer keeps what came before it (a stream has sent that line)."""

    def __init__(self):
        self.text = ""
        self._seen: set[str] = set()
        self._line_start = 0

    def feed(self, piece: str) -> int | None:
        """Adds generated text; returns where the answer ends once a line repeats, else None."""
        self.text += piece
        while (end := self.text.find("\n", self._line_start)) >= 0:
            line = " ".join(self.text[self._line_start:end].split())
            if line in self._seen:
                return self._line_start
            if line:
                self._seen.add(line)
            self._line_start = end + 1
        return None


@dataclass
class _Session:
    turns: deque  # the last questions and answers, for the prompt
    subject: str = ""  # the last question that did not refer back: what follow-ups are about
    span: tuple[int | None, int | None] = (None, None)  # the subject's time range


def _what_to_search(question: str, session: _Session | None, since_ns: int | None,
                    until_ns: int | None) -> tuple[str, int | None, int | None]:
    """The text to recall by, and the time range: the request's, else one the
    question names (timewords), else, for a follow-up, its subject's. A
    follow-up is searched together with its subject, so "when did it start?"
    finds what "it" was; a question with a subject of its own starts afresh."""
    searched = question
    if since_ns is None and until_ns is None and (named := named_range(question)):
        since_ns, until_ns = named.since_ns, named.until_ns
        searched = named.rest if named.rest.strip(" ?.!") else question
    if session is None:
        return searched, since_ns, until_ns
    if session.subject and refers_back(searched):
        if since_ns is None and until_ns is None:
            since_ns, until_ns = session.span
        return f"{session.subject} {searched}", since_ns, until_ns
    session.subject, session.span = searched, (since_ns, until_ns)
    return searched, since_ns, until_ns


class Agent:
    def __init__(self, name: str, memories: list[SpaceMemory], embedder: Embedder,
                 generator: Generator | None, *, system_prompt: str = prompts.DEFAULT_SYSTEM_PROMPT,
                 top_k: int = 8, answer_tokens: int = 320, history_turns: int = 3,
                 max_sessions: int = 1000, answer_log: AnswerLog | None = None):
        self.name = name
        self.memories = {m.space.name: m for m in memories}
        self.embedder, self.generator = embedder, generator
        self.system_prompt, self.top_k = system_prompt, top_k
        self.answer_tokens, self.history_turns = answer_tokens, history_turns
        self.max_sessions = max_sessions
        self.answer_log = answer_log
        self._sessions: OrderedDict[str, _Session] = OrderedDict()
        self._sessions_lock = threading.Lock()

    def sessions_kept(self) -> int:
        return len(self._sessions)

    def select(self, requested: list[str]) -> list[SpaceMemory]:
        if not requested:
            return list(self.memories.values())
        unknown = [s for s in requested if s not in self.memories]
        if unknown:
            raise SpaceNotAllowed(
                f"agent {self.name} is not configured for Space(s) {', '.join(unknown)}; "
                f"its Spaces: {', '.join(self.memories)}")
        return [self.memories[s] for s in requested]

    def _session(self, session_id: str) -> _Session:
        with self._sessions_lock:
            session = self._sessions.pop(session_id, None) or _Session(deque(maxlen=self.history_turns * 2))
            self._sessions[session_id] = session
            while len(self._sessions) > self.max_sessions:
                self._sessions.popitem(last=False)
            return session

    def stream(self, question: str, spaces: list[str] | None = None, since_ns: int | None = None,
               until_ns: int | None = None, top_k: int = 0, retrieval_only: bool = False,
               session_id: str = "") -> Iterator[str | Answer]:
        """Yields the answer's text as it is generated, then the whole Answer."""
        if not question.strip():
            raise ValueError("question must not be empty")
        started = time.perf_counter()
        memories = self.select(spaces or [])
        session = self._session(session_id) if session_id else None
        searched, since_ns, until_ns = _what_to_search(question, session, since_ns, until_ns)
        for memory in memories:
            memory.learn_vocabulary(self.embedder.embed)
        # One embedding call: the question, and its words for query expansion.
        words = content_words(searched)[:MAX_EXPANDED_WORDS]
        vectors = self.embedder.embed([searched, *words])
        recalled = recall(memories, searched, vectors[0], top_k or self.top_k, since_ns, until_ns,
                          word_vectors=dict(zip(words, vectors[1:])))
        recall_ms = (time.perf_counter() - started) * 1000
        answer = Answer(question, "", [Citation(i, h, False) for i, h in enumerate(recalled.hits, 1)],
                        recalled.stats, recall_ms, since_ns=since_ns, until_ns=until_ns)
        if not retrieval_only:
            if self.generator is None:
                raise ValueError(f"agent {self.name} has no generation model; ask with retrieval_only")
            history = session.turns if session is not None else deque()
            built = prompts.build(
                question, recalled.hits, recalled.stats, system_prompt=self.system_prompt,
                history=list(history), context_size=self.generator.context_size,
                answer_tokens=self.answer_tokens, count_tokens=self.generator.count_tokens)
            answer.prompt_tokens = built.tokens
            answer.citations = answer.citations[: len(built.hits)]
            generation_started = time.perf_counter()
            loop, cut = LoopGuard(), None
            generation = self.generator.generate(built.messages, self.answer_tokens)
            try:
                for text in generation:
                    yield text
                    if (cut := loop.feed(text)) is not None:
                        break
            finally:
                generation.close()  # a loop cut short: the model stops decoding
            answer.generation_ms = (time.perf_counter() - generation_started) * 1000
            answer.text = loop.text[:cut].strip()
            answer.completion_tokens = self.generator.count_tokens(answer.text) if answer.text else 0
            asked = "\n".join(m["content"] for m in built.messages if m["role"] == "user")
            answer.unsupported_figures = prompts.unsupported_figures(answer.text, asked)
            cited = prompts.cited_numbers(answer.text)
            for citation in answer.citations:
                citation.cited = citation.number in cited
            if session_id:
                history.extend([{"role": "user", "content": question},
                                {"role": "assistant", "content": answer.text}])
        if self.answer_log:
            self.answer_log.write(self.name, answer, (time.perf_counter() - started) * 1000)
        yield answer

    def ask(self, question: str, **options) -> Answer:
        for item in self.stream(question, **options):
            if isinstance(item, Answer):
                return item
        raise RuntimeError("the answer stream ended without an answer")
