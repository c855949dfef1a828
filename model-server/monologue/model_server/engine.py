"""One GGUF model in llama.cpp, in one role: generation or embedding.

A llama.cpp context is not thread-safe: an Engine is driven by one thread at a
time (the scheduler's worker). Tokenizing only reads the vocabulary, so
count_tokens and prepare may be called from any thread.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import llama_cpp
import numpy as np
from llama_cpp import Llama, LlamaGrammar, _internals
from llama_cpp._logger import set_verbose
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from .decoding import Chunk, Decoder, Request

GENERATION, EMBEDDING = "generation", "embedding"
ROLES = (GENERATION, EMBEDDING)
CHAT_ROLES = ("system", "user", "assistant")


class InvalidRequest(ValueError):
    """The request cannot be served as asked (maps to INVALID_ARGUMENT)."""


class WrongRole(InvalidRequest):
    """The request needs the other role (maps to FAILED_PRECONDITION)."""


@dataclass
class GenerateParams:
    prompt: str = ""
    messages: list[dict[str, str]] = field(default_factory=list)
    max_tokens: int = 256
    temperature: float = 0.8
    top_p: float = 0.95
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    json_schema: str = ""
    grammar: str = ""


@dataclass
class EmbedResult:
    vector: np.ndarray
    tokens: int
    truncated: bool = False
    chunks: int = 1


TRUNCATE, SPLIT, ERROR = "truncate", "split", "error"


@dataclass
class ModelInfo:
    name: str
    sha256: str
    role: str
    context_size: int
    embedding_dimension: int
    chat_template: bool


class Engine:
    def __init__(
        self,
        path: Path,
        role: str,
        *,
        name: str = "",
        sha256: str = "",
        context_size: int = 2048,
        threads: int | None = None,
        parallel: int = 1,
    ):
        """parallel: generations decoded together (each gets its own window of context)."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, not {role!r}")
        if parallel < 1:
            raise ValueError("parallel must be at least 1")
        self.role = role
        threads = threads or os.cpu_count()  # llama.cpp's default is half the cores
        self.decoder: Decoder | None = None
        if role == EMBEDDING:
            # An embedding model reads a whole input in one batch (its attention
            # is not causal), so the batch is the window: no silent cut at n_batch.
            self.llm = Llama(
                model_path=str(path),
                embedding=True,
                n_ctx=context_size,
                n_batch=context_size,
                n_ubatch=context_size,
                n_threads=threads,
                verbose=False,
            )
            self.model = self.llm._model
            self.window = self.llm.n_ctx()
        else:
            set_verbose(False)
            llama_cpp.llama_backend_init()  # as Llama does before its first model
            self.model = _internals.LlamaModel(
                path_model=str(path), params=_internals.LlamaModel.default_params(), verbose=False
            )
            self.decoder = Decoder(self.model, window=context_size, slots=parallel, threads=threads)
            self.window = self.decoder.window
        metadata = self.model.metadata()
        template = metadata.get("tokenizer.chat_template", "")
        self._formatter = self._chat_formatter(template) if template else None
        self.info = ModelInfo(
            name=name or metadata.get("general.name") or Path(path).stem,
            sha256=sha256,
            role=role,
            context_size=self.window,
            embedding_dimension=self.model.n_embd(),
            chat_template=bool(template),
        )

    def _chat_formatter(self, template: str) -> Jinja2ChatFormatter:
        def text_of(token_id: int) -> str:
            return self.model.token_get_text(token_id) if token_id != -1 else ""

        eos = self.model.token_eos()
        return Jinja2ChatFormatter(
            template=template,
            eos_token=text_of(eos),
            bos_token=text_of(self.model.token_bos()),
            stop_token_ids=[eos],
        )

    def require(self, role: str) -> None:
        if self.role != role:
            raise WrongRole(f"model {self.info.name} serves {self.role}, not {role}")

    # ------------------------------------------------------------ tokens

    def count_tokens(self, texts: list[str]) -> list[int]:
        return [len(self.model.tokenize(t.encode(), add_bos=False, special=False)) for t in texts]

    # ------------------------------------------------------------ generation

    def render_prompt(self, params: GenerateParams) -> tuple[str, list[str]]:
        """The raw prompt and the stop strings the chat template adds."""
        if bool(params.prompt) == bool(params.messages):
            raise InvalidRequest("give exactly one of prompt or messages")
        if params.prompt:
            return params.prompt, []
        if self._formatter is None:
            raise InvalidRequest(
                f"model {self.info.name} has no chat template, so it cannot format role "
                "messages; send a raw prompt instead"
            )
        for m in params.messages:
            if m["role"] not in CHAT_ROLES:
                raise InvalidRequest(f"message role must be one of {CHAT_ROLES}, not {m['role']!r}")
        rendered = self._formatter(messages=params.messages)
        stops = rendered.stop if isinstance(rendered.stop, list) else [rendered.stop] if rendered.stop else []
        return rendered.prompt, stops

    def prepare(self, params: GenerateParams) -> Request:
        """Validates and tokenizes a generation request, and builds its sampler."""
        self.require(GENERATION)
        if params.max_tokens < 1:
            raise InvalidRequest("max_tokens must be at least 1")
        prompt, template_stops = self.render_prompt(params)
        tokens = self.model.tokenize(prompt.encode(), add_bos=True, special=True)
        if not tokens:
            raise InvalidRequest("the prompt has no tokens")
        if len(tokens) + params.max_tokens > self.window:
            raise InvalidRequest(
                f"prompt ({len(tokens)} tokens) plus max_tokens ({params.max_tokens}) exceed "
                f"the context window ({self.window} tokens)"
            )
        stops = [s for s in (*params.stop, *template_stops) if s]
        return Request(tokens, params.max_tokens, stops, self._sampler(params))

    def _sampler(self, params: GenerateParams) -> _internals.LlamaSampler:
        """llama-cpp-python's default chain for these parameters (its no-op
        stages left out): grammar, then greedy or top-k, top-p, min-p,
        temperature and a seeded draw."""
        grammar = self._grammar(params)  # first: a bad one is refused before anything is built
        sampler = _internals.LlamaSampler()
        if grammar is not None:
            llama_cpp.llama_sampler_chain_add(sampler.sampler, grammar)
        if params.temperature == 0:
            sampler.add_greedy()
        else:
            sampler.add_top_k(40)
            sampler.add_top_p(params.top_p, 1)
            sampler.add_min_p(0.05, 1)
            sampler.add_temp(params.temperature)
            sampler.add_dist(llama_cpp.LLAMA_DEFAULT_SEED if params.seed is None else params.seed)
        return sampler

    def _grammar(self, params: GenerateParams):
        """The grammar stage of the chain, or None."""
        try:
            if params.json_schema:
                json.loads(params.json_schema)
                grammar = LlamaGrammar.from_json_schema(params.json_schema, verbose=False)
            elif params.grammar:
                grammar = LlamaGrammar.from_string(params.grammar, verbose=False)
            else:
                return None
        except Exception as err:  # bad JSON, or a schema the converter rejects
            raise InvalidRequest(f"invalid json_schema: {err}") from err
        # llama.cpp parses the grammar here and gives NULL when it does not parse.
        stage = llama_cpp.llama_sampler_init_grammar(
            self.model.vocab, grammar._grammar.encode(), grammar._root.encode()
        )
        if not stage:
            raise InvalidRequest("grammar does not parse (GBNF expected, root rule `root`)")
        return stage

    def generate(self, params: GenerateParams, should_stop: Callable[[], bool]) -> Iterator[Chunk]:
        """One generation on its own: streams chunks of text, the last with the
        finish reason and usage; stops between tokens once should_stop() is
        true. (The scheduler drives several at once through self.decoder.)"""
        generation = self.decoder.start(self.prepare(params))  # prepare checks the role
        try:
            while not generation.done:
                if should_stop():
                    generation.finish("cancelled")
                else:
                    self.decoder.step()
                yield from generation.take_chunks()
        finally:
            self.decoder.cancel(generation)

    # ------------------------------------------------------------ embeddings

    def embed(self, texts: list[str], overflow: str = TRUNCATE) -> list[EmbedResult]:
        self.require(EMBEDDING)
        plans: list[tuple[int, list[list[int]], bool]] = []  # (tokens, windows, truncated)
        for i, text in enumerate(texts):
            tokens = self.model.tokenize(text.encode(), add_bos=True, special=False)
            plans.append((len(tokens), *self._windows(tokens, overflow, i)))
        flat = [w for _, windows, _ in plans for w in windows]
        vectors = iter(self._embed_token_lists(flat))
        results = []
        for n_tokens, windows, truncated in plans:
            parts = [next(vectors) for _ in windows]
            vector = parts[0] if len(parts) == 1 else _normalized(np.mean(parts, axis=0))
            results.append(EmbedResult(vector, n_tokens, truncated, len(windows)))
        return results

    def _windows(self, tokens: list[int], overflow: str, index: int) -> tuple[list[list[int]], bool]:
        if len(tokens) <= self.window:
            return [tokens], False
        if overflow == ERROR:
            raise InvalidRequest(
                f"text {index} has {len(tokens)} tokens, more than the model's window of "
                f"{self.window}; send it with overflow TRUNCATE or SPLIT"
            )
        # Keep the model's start and end markers ([CLS] ... [SEP]) on every window.
        head, body, tail = tokens[:1], tokens[1:-1], tokens[-1:]
        room = self.window - 2
        if overflow == TRUNCATE:
            return [head + body[:room] + tail], True
        return [head + body[i : i + room] + tail for i in range(0, len(body), room)], False

    def _embed_token_lists(self, token_lists: list[list[int]]) -> list[np.ndarray]:
        """Llama.embed for token lists: it only takes strings and cuts them silently."""
        llm, batch, out = self.llm, self.llm._batch, []
        n_embd, n_seq_max = llm.n_embd(), llm.context_params.n_seq_max

        def decode(n_seqs: int) -> None:
            llm._ctx.kv_cache_clear()
            llm._ctx.decode(batch)
            batch.reset()
            for seq in range(n_seqs):
                ptr = llama_cpp.llama_get_embeddings_seq(llm._ctx.ctx, seq)
                out.append(_normalized(np.ctypeslib.as_array(ptr, shape=(n_embd,)).copy()))

        batch.reset()
        seqs = used = 0
        for tokens in token_lists:
            if seqs and (used + len(tokens) > self.window or seqs >= n_seq_max):
                decode(seqs)
                seqs = used = 0
            batch.add_sequence(tokens, seqs, True)
            seqs += 1
            used += len(tokens)
        if seqs:
            decode(seqs)
        llm._ctx.kv_cache_clear()
        return out


def _normalized(v: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(v))
    return (v / norm if norm else v).astype(np.float32)
