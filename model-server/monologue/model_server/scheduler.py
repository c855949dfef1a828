"""A bounded, fair queue in front of the one thread that drives the engine.

Requests from each client wait in their own line and the worker takes from
the lines in turn, so one busy client cannot starve the others. A full queue
refuses at once (QueueFull), which the service maps to RESOURCE_EXHAUSTED:
back-pressure instead of unbounded latency. Embedding requests that are
waiting together are run as one llama.cpp batch.

One thread, always the same, runs llama.cpp: its OpenMP runtime keeps a team
of threads per calling thread, and once teams outnumber the cores it stops
spinning and decoding slows by half or more.

Tokens are pulled, not pushed: the worker computes a token when the request's
thread asks for it. Pushed as they come, the request's thread would wake while
llama.cpp keeps every core busy, and the decoding stalls (0.76 of llama.cpp
direct in tokens/s). The second token is asked for once the first is sent
(computing it during the send, the first token waited for a core: time to first
token 0.92 → 0.80 of direct); from then on the next token is asked for as soon
as one arrives, so sending a token overlaps computing the next (tokens/s 0.944
→ 0.952 of direct, paired runs).

A reader that does not ask for its next token within PULL_WAIT (a stuck or
slow client) is not waited for: the worker then runs ahead to the end of the
job, queueing the tokens, as it would push them.
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

from .engine import Chunk, Engine, GenerateParams

QUEUE_DEPTH = Gauge("model_server_queue_depth", "Requests waiting for the model")

_DONE = object()
PULL_WAIT = 0.1  # seconds the worker waits for a reader to ask for its next token


class QueueFull(Exception):
    pass


class Stopped(Exception):
    """The server is shutting down."""


@dataclass
class GenerateJob:
    params: GenerateParams
    chunks: "queue.Queue[Any]" = field(default_factory=queue.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)
    # One permit per chunk the reader asked for; the first is asked at once.
    wanted: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(1))

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
        """Refuse new work, fail what waits, finish the running job."""
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

    def _next(self) -> GenerateJob | EmbedJob | None:
        with self._cond:
            while not self._lines and not self._stopping:
                self._cond.wait()
            if self._stopping:
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
        while (job := self._next()) is not None:
            if isinstance(job, GenerateJob):
                self._generate(job)
            else:
                budget = self.max_embed_batch_texts - len(job.texts)
                self._embed([job, *self._take_waiting_embeds(job.overflow, budget)])

    def _generate(self, job: GenerateJob) -> None:
        stream = self.engine.generate(job.params, job.cancelled.is_set)
        pulled = True
        try:
            while True:
                # The reader asked for the next chunk (or cancelled); a slow one is not waited for.
                pulled = pulled and job.wanted.acquire(timeout=PULL_WAIT)
                if job.cancelled.is_set():
                    break
                chunk = next(stream, None)
                if chunk is None:
                    break
                job.chunks.put(chunk)
                if chunk.finish_reason:  # the last one
                    break
        except Exception as err:  # handed to the waiting request, which maps it to a status
            job.chunks.put(err)
        finally:
            stream.close()
        job.chunks.put(_DONE)

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
