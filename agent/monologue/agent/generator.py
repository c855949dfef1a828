"""Text generation for answers: a model server over gRPC, or llama.cpp in process."""

from __future__ import annotations

from typing import Iterator, Protocol

import grpc
from monologue.api.v1 import model_pb2, model_pb2_grpc

from .embedder import CHANNEL_OPTIONS


class GeneratorUnavailable(ConnectionError):
    """The generation model cannot be reached now."""


class Generator(Protocol):
    context_size: int

    def count_tokens(self, text: str) -> int: ...

    def generate(self, messages: list[dict[str, str]], max_tokens: int) -> Iterator[str]: ...


class GrpcGenerator:
    def __init__(self, endpoint: str, timeout: float = 300.0):
        self.endpoint, self.timeout = endpoint, timeout
        self.channel = grpc.insecure_channel(endpoint, options=CHANNEL_OPTIONS)
        self.stub = model_pb2_grpc.ModelServiceStub(self.channel)
        self._context_size: int | None = None

    def _unavailable(self, err: grpc.RpcError) -> Exception:
        if err.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                          grpc.StatusCode.RESOURCE_EXHAUSTED):
            return GeneratorUnavailable(
                f"model server {self.endpoint} is unavailable ({err.code().name}: {err.details()})")
        return err

    @property
    def context_size(self) -> int:
        if self._context_size is None:
            try:
                info = self.stub.Info(model_pb2.InfoRequest(), timeout=10)
            except grpc.RpcError as err:
                raise self._unavailable(err) from err
            self._context_size = info.context_size
        return self._context_size

    def count_tokens(self, text: str) -> int:
        try:
            return self.stub.CountTokens(model_pb2.CountTokensRequest(texts=[text]), timeout=10).counts[0]
        except grpc.RpcError as err:
            raise self._unavailable(err) from err

    def generate(self, messages, max_tokens) -> Iterator[str]:
        request = model_pb2.GenerateRequest(
            messages=[model_pb2.ChatMessage(role=m["role"], content=m["content"]) for m in messages],
            max_tokens=max_tokens, temperature=0.1, seed=1,
        )
        call = self.stub.Generate(request, timeout=self.timeout)
        try:
            for response in call:
                if response.text:
                    yield response.text
        except grpc.RpcError as err:
            raise self._unavailable(err) from err
        finally:
            call.cancel()  # closed early (an answer cut short): the server stops decoding


class LocalGenerator:
    """llama.cpp in this process (embedded mode), behind the model server's
    scheduler: concurrent Asks are decoded together, on the one thread that
    runs llama.cpp, and an answer no longer read stops being generated."""

    def __init__(self, model: str = "qwen2.5-coder-0.5b-instruct", context_size: int = 4096,
                 parallel: int = 4):
        from monologue.model_server.engine import GENERATION, Engine
        from monologue.model_server.scheduler import Scheduler
        from monologue.model_server.sources import resolve

        path, sha256 = resolve(model)
        self.engine = Engine(path, GENERATION, sha256=sha256, context_size=context_size, parallel=parallel)
        self.context_size = self.engine.window
        self.scheduler = Scheduler(self.engine)

    def count_tokens(self, text: str) -> int:
        return self.engine.count_tokens([text])[0]  # reads the vocabulary only: any thread

    def generate(self, messages, max_tokens) -> Iterator[str]:
        from monologue.model_server.engine import GenerateParams
        from monologue.model_server.scheduler import GenerateJob, QueueFull

        params = GenerateParams(messages=messages, max_tokens=max_tokens, temperature=0.1, seed=1)
        job = GenerateJob(self.engine.prepare(params))
        try:
            self.scheduler.submit("agent", job)
        except QueueFull as err:
            raise GeneratorUnavailable(f"the local model is busy: {err}") from err
        for chunk in job.results():  # closing it early cancels the job
            if chunk.text:
                yield chunk.text
