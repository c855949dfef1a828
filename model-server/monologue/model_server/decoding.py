"""Batched decoding: the generations in flight share each llama.cpp step.

On a CPU, one decoding step for eight sequences costs far less than eight
steps for one (SmolLM2-135M on 2 cores: 33 ms against 8 × 7 ms), so requests
decoded together give more tokens per second in total than requests decoded
in turn. Each generation has its own sequence in the KV cache (a slot), its
own sampler chain (grammar, top-p, temperature, seed), stop strings and UTF-8
assembly. New requests join between steps; a long prompt is fed in pieces of
at most one batch, after the tokens of the generations already running, so
these keep streaming while it is read.

A slot keeps the tokens it holds when its generation ends, and a new request
goes to the free slot that shares the longest start with its prompt: a
repeated prompt, or one with the same system prompt, is evaluated only from
where it differs.

llama-cpp-python's high-level Llama decodes one sequence at a time, so this
uses its thin wrappers over llama.cpp (_internals) and the C API directly.
"""

from __future__ import annotations

import codecs
import ctypes
from dataclasses import dataclass

import llama_cpp
from llama_cpp import _internals


@dataclass
class Chunk:
    text: str
    finish_reason: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass
class Request:
    """A generation request made ready for the decoder: validated and tokenized."""

    tokens: list[int]
    max_tokens: int
    stops: list[str]
    sampler: _internals.LlamaSampler  # this request's own chain: it keeps grammar state


class NoFreeSlot(Exception):
    pass


class Slot:
    """One sequence of the KV cache, and the tokens it holds."""

    def __init__(self, seq: int):
        self.seq = seq
        self.held: list[int] = []
        self.last_used = 0


class Generation:
    """One request being decoded: tokens are fed in, chunks of text come out."""

    def __init__(self, request: Request, slot: Slot, vocab, evaluated: int):
        self.request = request
        self.slot = slot
        self.pending = request.tokens[evaluated:]  # fed at the next steps
        self.completion_tokens = 0
        self.finish_reason = ""
        self._chunks: list[Chunk] = []
        self._vocab = vocab
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._unsent = ""  # text that may be the start of a stop string
        self._piece = ctypes.create_string_buffer(64)

    @property
    def done(self) -> bool:
        return bool(self.finish_reason)

    def take_chunks(self) -> list[Chunk]:
        chunks, self._chunks = self._chunks, []
        return chunks

    def accept(self, token: int) -> None:
        """The token sampled for this generation at the last step."""
        if llama_cpp.llama_vocab_is_eog(self._vocab, token):
            return self.finish("stop")
        self.completion_tokens += 1
        if self._emit(self._utf8.decode(self._bytes_of(token))):
            return self.finish("stop", flush=False)
        if self.completion_tokens >= self.request.max_tokens:
            return self.finish("length")
        self.pending = [token]

    def finish(self, reason: str, flush: bool = True) -> None:
        if flush:
            self._send(self._unsent + self._utf8.decode(b"", final=True))
        self._unsent = ""
        self.pending = []
        self.finish_reason = reason
        self._chunks.append(Chunk("", reason, len(self.request.tokens), self.completion_tokens))

    def _bytes_of(self, token: int) -> bytes:
        # special=False: control tokens (end of turn...) are not text
        n = llama_cpp.llama_token_to_piece(self._vocab, token, self._piece, len(self._piece), 0, False)
        if n < 0:  # a longer piece than the buffer
            self._piece = ctypes.create_string_buffer(-n)
            n = llama_cpp.llama_token_to_piece(self._vocab, token, self._piece, len(self._piece), 0, False)
        return self._piece.raw[:n]

    def _emit(self, text: str) -> bool:
        """Sends text up to a stop string; true if one was met."""
        text = self._unsent + text
        stops = self.request.stops
        at = min((i for i in (text.find(s) for s in stops) if i >= 0), default=-1)
        if at >= 0:
            self._send(text[:at])
            return True
        # Hold back the end that could still become a stop string.
        keep = max((k for s in stops for k in range(min(len(s) - 1, len(text)), 0, -1)
                    if text.endswith(s[:k])), default=0)
        self._send(text[: len(text) - keep])
        self._unsent = text[len(text) - keep :]
        return False

    def _send(self, text: str) -> None:
        if text:
            self._chunks.append(Chunk(text))


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


class Decoder:
    """A llama.cpp context with one KV-cache sequence per slot, stepped by one thread."""

    def __init__(self, model: _internals.LlamaModel, *, window: int, slots: int, threads: int,
                 batch_size: int = 512):
        params = llama_cpp.llama_context_default_params()
        params.n_seq_max = slots
        params.n_ctx = window * slots
        params.kv_unified = False  # each sequence gets its own n_ctx / n_seq_max cells: a full window
        params.n_batch = params.n_ubatch = batch_size
        params.n_threads = params.n_threads_batch = threads
        self.ctx = _internals.LlamaContext(model=model, params=params, verbose=False)
        self.window = llama_cpp.llama_n_ctx_seq(self.ctx.ctx)
        self.batch_size = batch_size
        self._batch = _internals.LlamaBatch(n_tokens=batch_size, embd=0, n_seq_max=1, verbose=False)
        self._vocab = model.vocab
        self._slots = [Slot(seq) for seq in range(slots)]
        self._free = list(self._slots)
        self._clock = 0
        self.active: list[Generation] = []

    def free_slots(self) -> int:
        return len(self._free)

    def start(self, request: Request) -> Generation:
        if not self._free:
            raise NoFreeSlot(f"all {len(self._slots)} slots are decoding")
        tokens = request.tokens
        # Longest shared start first; among equals, the slot used longest ago.
        shared, _, slot = max(((_common_prefix(s.held, tokens), -s.last_used, s) for s in self._free),
                              key=lambda choice: choice[:2])
        # At least the prompt's last token is fed: its logits give the first token.
        keep = min(shared, len(tokens) - 1)
        if keep < len(slot.held):
            if not llama_cpp.llama_memory_seq_rm(self.ctx.memory, slot.seq, keep, -1):
                # a cache that cannot drop a tail (recurrent models) starts over
                llama_cpp.llama_memory_seq_rm(self.ctx.memory, slot.seq, -1, -1)
                keep = 0
            del slot.held[keep:]
        self._free.remove(slot)
        self._clock += 1
        slot.last_used = self._clock
        generation = Generation(request, slot, self._vocab, keep)
        self.active.append(generation)
        return generation

    def cancel(self, generation: Generation) -> None:
        if generation in self.active:
            self.active.remove(generation)
            self._free.append(generation.slot)

    def step(self) -> None:
        """One llama.cpp decode for every active generation, then one token each
        for those whose whole prompt has been read."""
        batch = self._batch.batch
        n, fed, outputs = 0, [], []
        # Generations that are producing tokens go first, then prompts in pieces.
        for gen in sorted(self.active, key=lambda g: len(g.pending)):
            room = self.batch_size - n
            if room == 0:
                break
            take = gen.pending[:room]
            pos, seq = len(gen.slot.held), gen.slot.seq
            for i, token in enumerate(take):
                batch.token[n] = token
                batch.pos[n] = pos + i
                batch.n_seq_id[n] = 1
                batch.seq_id[n][0] = seq
                batch.logits[n] = False
                n += 1
            fed.append((gen, len(take)))
            if len(take) == len(gen.pending):
                batch.logits[n - 1] = True
                outputs.append((gen, n - 1))
        batch.n_tokens = n
        if n == 0:
            return
        code = llama_cpp.llama_decode(self.ctx.ctx, batch)
        if code != 0:
            raise RuntimeError(f"llama_decode failed with code {code}")
        for gen, count in fed:
            gen.slot.held.extend(gen.pending[:count])
            del gen.pending[:count]
        for gen, index in outputs:
            gen.accept(llama_cpp.llama_sampler_sample(gen.request.sampler.sampler, self.ctx.ctx, index))
        for gen in [g for g in self.active if g.done]:
            self.cancel(gen)

    def reset(self) -> None:
        """After a failed step: every generation dropped, the cache emptied."""
        self.active.clear()
        self._free = list(self._slots)
        for slot in self._slots:
            slot.held.clear()
        llama_cpp.llama_memory_clear(self.ctx.memory, True)
