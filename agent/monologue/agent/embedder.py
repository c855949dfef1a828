"""Embeddings for memory: a model server over gRPC, or llama.cpp in process."""

from __future__ import annotations

from typing import Protocol

import grpc
import grpc.experimental
import numpy as np
from monologue.api.v1 import model_pb2, model_pb2_grpc


# gRPC's default reconnect backoff grows to 2 minutes: after an outage, a
# channel would keep failing fast long after the model server is back.
# A streamed call (Generate, Chat) is read on the calling thread instead of
# being handed over from the channel's polling thread: a one-message stream's
# round trip fell from 0.75 to 0.5 ms here, and fewer threads wake per token.
CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 500),
    ("grpc.min_reconnect_backoff_ms", 500),
    ("grpc.max_reconnect_backoff_ms", 5000),
    (grpc.experimental.ChannelOptions.SingleThreadedUnaryStream, 1),
]


class EmbedderUnavailable(ConnectionError):
    """The embedding model cannot be reached now; the caller retries later."""


class Embedder(Protocol):
    dimension: int

    def embed(self, texts: list[str]) -> np.ndarray: ...


class GrpcEmbedder:
    """A ModelServer in the embedding role."""

    def __init__(self, endpoint: str, timeout: float = 60.0, batch: int = 128):
        self.endpoint, self.timeout, self.batch = endpoint, timeout, batch
        self.channel = grpc.insecure_channel(endpoint, options=CHANNEL_OPTIONS)
        self.stub = model_pb2_grpc.ModelServiceStub(self.channel)
        self._dimension: int | None = None

    @property
    def dimension(self) -> int:
        if self._dimension is None:
            info = self._call(self.stub.Info, model_pb2.InfoRequest())
            if info.role != "embedding":
                raise ValueError(f"model server {self.endpoint} serves {info.role}, not embeddings")
            self._dimension = info.embedding_dimension
        return self._dimension

    def _call(self, method, request):
        try:
            return method(request, timeout=self.timeout)
        except grpc.RpcError as err:
            if err.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                              grpc.StatusCode.RESOURCE_EXHAUSTED):
                raise EmbedderUnavailable(f"embedder {self.endpoint}: {err.code().name}: {err.details()}") from err
            raise

    def embed(self, texts: list[str]) -> np.ndarray:
        out = []
        for i in range(0, len(texts), self.batch):
            response = self._call(self.stub.Embed, model_pb2.EmbedRequest(texts=texts[i : i + self.batch]))
            out.extend(np.asarray(e.values, np.float32) for e in response.embeddings)
        return np.vstack(out) if out else np.zeros((0, self.dimension), np.float32)

    def close(self) -> None:
        self.channel.close()


class LocalEmbedder:
    """llama.cpp in this process (embedded mode), behind the model server's
    scheduler: texts of concurrent callers (the questions of concurrent Asks)
    are embedded in one batch, on the one thread that runs this model. Called
    from each request's thread instead, every thread got its own OpenMP team,
    and 50 concurrent Asks took 139–144 s instead of 130–136 s."""

    def __init__(self, model: str = "all-minilm-l6-v2", context_size: int = 512):
        from monologue.model_server.engine import EMBEDDING, Engine
        from monologue.model_server.scheduler import Scheduler
        from monologue.model_server.sources import resolve

        path, sha256 = resolve(model)
        self.engine = Engine(path, EMBEDDING, sha256=sha256, context_size=context_size)
        self.dimension = self.engine.info.embedding_dimension
        self.scheduler = Scheduler(self.engine)

    def embed(self, texts: list[str]) -> np.ndarray:
        from monologue.model_server.engine import TRUNCATE
        from monologue.model_server.scheduler import EmbedJob, QueueFull

        if not texts:
            return np.zeros((0, self.dimension), np.float32)
        job = EmbedJob(list(texts), TRUNCATE)
        try:
            self.scheduler.submit("local", job)
        except QueueFull as err:
            raise EmbedderUnavailable(f"the local embedding model is busy: {err}") from err
        return np.vstack([r.vector for r in job.future.result()])
