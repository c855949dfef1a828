"""A bounded, fair queue in front of the one thread that drives the engine.

Requests from each client wait in their own line and the worker takes from
the lines in turn, so one busy client cannot starve the others. A full queue
refuses at once (QueueFull), which the service maps to RESOURCE_EXHAUSTED:
back-pressure instead of unbounded latency. Generations run together, as many
as the engine has slots (decoding.py), joining between two steps; the rest
wait their turn in the queue. Embedding requests that are waiting together
are run as one llama.cpp batch.

One thread, always the same, runs llama.cpp: its OpenMP runtime keeps a team
of threads per calling thread, and once teams outnumber the cores it stops
spinning and decoding slows by half or more.

Tokens are pulled, not pushed: after handing a generation a token, the worker
computes its next one once the request's thread asks for it. Pushed as they
come, the request's thread would wake while llama.cpp keeps every core busy,
and the decoding stalls (0.76 of llama.cpp direct in tokens/s). The second
token is asked for once the first is sent (computing it during the send, the
first token waited for a core: time to first token 0.92 → 0.80 of direct);
from then on the next token is asked for as soon as one arrives, so sending a
token overlaps computing the next (tokens/s 0.944 → 0.952 of direct, paired
runs).

A reader that does not ask for its next token within PULL_WAIT (a stuck or
slow client) is not waited for again: its tokens are then queued as they come,
and it cannot hold up the generations decoded with it.
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections import OrderedDict, deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Iterator

from prometheus_client import Gauge

from .decoding import Chunk, Generation, Request
from .engine import Engine

QUEUE_DEPTH = Gauge("model_server_queue_depth", "Requests waiting for the model")
RUNNING = Gauge("model_server_generations_running", "Generations being decoded together")

_DONE = object()
PULL_WAIT = 0.1  # seconds the worker waits for a reader to ask for its next token


class QueueFull(Exception):
    pass


class Stopped(Exception):
    """The server is shutting down."""


@dataclass(eq=False)
class GenerateJob:
    request: Request
    chunks: "queue.Queue[Any]" = field(default_factory=queue.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)
    # One permit per chunk the reader asked for after receiving one.
    wanted: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(0))
    owed: bool = False  # a chunk was handed over: the next waits for the reader's ask
    pulled: bool = True  # false once the reader failed to ask within PULL_WAIT

    def cancel(self) -> None:
        self.cancelled.set()
        self.wanted.release()  # a worker waiting for the reader sees the cancel

    def results(self) -> Iterator[Chunk]:
        """Chunks as the worker produces them; re-raises the worker's error."""
        try:
            first = True
            while True:
                item = self.chunks.get()
                if item is _DONE:
                    return
                if isinstance(item, BaseException):
                    raise item
                if item.finish_reason:
                    yield item
                elif first:  # sent before the next one is computed
                    yield item
                    self.wanted.release()
                else:  # computed while this one is sent
                    self.wanted.release()
                    yield item
                first = False
        finally:  # also when the reader stops early: the worker must not wait for it
            self.cancel()


@dataclass
class EmbedJob:
    texts: list[str]
    overflow: str
    future: Future = field(default_factory=Future)


class Scheduler:
    def __init__(self, engine: Engine, max_queue: int = 64, max_embed_batch_texts: int = 256):
        self.engine = engine
        self.max_queue = max_queue
        self.max_embed_batch_texts = max_embed_batch_texts
        self._lines: OrderedDict[str, deque] = OrderedDict()
        self._size = 0
        self._cond = threading.Condition()
        self._stopping = False
        self._running: dict[GenerateJob, Generation] = {}  # only the worker touches it
        self._worker = threading.Thread(target=self._run, name="model-worker", daemon=True)
        self._worker.start()

    def submit(self, client: str, job: GenerateJob | EmbedJob) -> None:
        with self._cond:
            if self._stopping:
                raise Stopped("the model server is shutting down")
            if self._size >= self.max_queue:
                raise QueueFull(f"{self._size} requests already waiting (limit {self.max_queue})")
            self._lines.setdefault(client, deque()).append(job)
            self._size += 1
            QUEUE_DEPTH.set(self._size)
            self._cond.notify()

    def stop(self, timeout: float | None = None) -> None:
        """Refuse new work, fail what waits, finish the running jobs."""
        with self._cond:
            self._stopping = True
            waiting = [job for line in self._lines.values() for job in line]
            self._lines.clear()
            self._size = 0
            QUEUE_DEPTH.set(0)
            self._cond.notify_all()
        for job in waiting:
            _fail(job, Stopped("the model server is shutting down"))
        self._worker.join(timeout)

    def _next(self, wait: bool) -> GenerateJob | EmbedJob | None:
        """The next waiting job, in turn; None when there is none (and wait is
        false) or the scheduler stops."""
        with self._cond:
            while wait and not self._lines and not self._stopping:
                self._cond.wait()
            if self._stopping or not self._lines:
                return None
            client, line = next(iter(self._lines.items()))
            job = line.popleft()
            # Round robin: this client goes to the back of the order.
            del self._lines[client]
            if line:
                self._lines[client] = line
            self._size -= 1
            QUEUE_DEPTH.set(self._size)
            return job

    def _take_waiting_embeds(self, overflow: str, budget: int) -> list[EmbedJob]:
        """Other embedding jobs already waiting with the same overflow rule."""
        taken = []
        with self._cond:
            for client in list(self._lines):
                line = self._lines[client]
                for job in list(line):
                    if isinstance(job, EmbedJob) and job.overflow == overflow and len(job.texts) <= budget:
                        line.remove(job)
                        taken.append(job)
                        budget -= len(job.texts)
                if not line:
                    del self._lines[client]
            self._size -= len(taken)
            QUEUE_DEPTH.set(self._size)
        return taken

    def _run(self) -> None:
        decoder = self.engine.decoder
        while True:
            # Take waiting jobs while a slot is free; wait for one only when nothing runs.
            while decoder is None or decoder.free_slots():
                job = self._next(wait=not self._running)
                if job is None:
                    break
                self._begin(job)
            if self._running:
                self._step()
            elif self._stopping:
                return

    def _begin(self, job: GenerateJob | EmbedJob) -> None:
        if isinstance(job, EmbedJob):
            budget = self.max_embed_batch_texts - len(job.texts)
            self._embed([job, *self._take_waiting_embeds(job.overflow, budget)])
            return
        if job.cancelled.is_set():
            job.chunks.put(_DONE)
            return
        try:
            self._running[job] = self.engine.decoder.start(job.request)
        except Exception as err:
            _fail(job, err)
        RUNNING.set(len(self._running))

    def _step(self) -> None:
        """One decoding step for the running generations, their chunks handed over."""
        decoder = self.engine.decoder
        for job, generation in list(self._running.items()):
            if job.owed:  # the reader asks for its next token (or cancels); a slow one is not waited for
                job.pulled = job.pulled and job.wanted.acquire(timeout=PULL_WAIT)
                job.owed = False
            if job.cancelled.is_set():
                decoder.cancel(generation)
                self._end(job)
        if not self._running:
            return
        try:
            decoder.step()
        except Exception as err:  # handed to every waiting request, which maps it to a status
            for job in list(self._running):
                job.chunks.put(err)
                self._end(job)
            decoder.reset()
            return
        for job, generation in list(self._running.items()):
            chunks = generation.take_chunks()
            for chunk in chunks:
                job.chunks.put(chunk)
            if generation.done:
                self._end(job)
            elif chunks:
                job.owed = True

    def _end(self, job: GenerateJob) -> None:
        del self._running[job]
        job.chunks.put(_DONE)
        RUNNING.set(len(self._running))

    def _embed(self, jobs: list[EmbedJob]) -> None:
        texts = list(itertools.chain.from_iterable(j.texts for j in jobs))
        try:
            results = self.engine.embed(texts, jobs[0].overflow)
        except Exception as err:
            if len(jobs) == 1:
                jobs[0].future.set_exception(err)
            else:  # one bad input must not fail the others batched with it
                for job in jobs:
                    self._embed([job])
            return
        start = 0
        for job in jobs:
            job.future.set_result(results[start : start + len(job.texts)])
            start += len(job.texts)


def _fail(job: GenerateJob | EmbedJob, err: Exception) -> None:
    if isinstance(job, GenerateJob):
        job.chunks.put(err)
        job.chunks.put(_DONE)
    else:
        job.future.set_exception(err)


__all__ = ["Chunk", "EmbedJob", "GenerateJob", "QueueFull", "Scheduler", "Stopped"]
