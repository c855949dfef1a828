"""The gRPC ModelService over one engine, with health and reflection.

Health is NOT_SERVING until the model is loaded; requests before that get
UNAVAILABLE. Every failure leaves with a precise status code.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent import futures
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from monologue.api.v1 import model_pb2, model_pb2_grpc
from prometheus_client import Counter, Histogram

from .catalog import ModelError
from .engine import EMBEDDING, ERROR, SPLIT, TRUNCATE, Engine, GenerateParams, InvalidRequest, WrongRole
from .scheduler import EmbedJob, GenerateJob, QueueFull, Scheduler, Stopped
from .sources import resolve

log = logging.getLogger("monologue.model_server")

REQUEST_SECONDS = Histogram(
    "model_server_request_seconds", "Request duration", ["method", "code"]
)
FIRST_TOKEN_SECONDS = Histogram("model_server_time_to_first_token_seconds", "Time to first token")
TOKENS_PER_SECOND = Histogram(
    "model_server_tokens_per_second", "Generation speed per request",
    buckets=(1, 5, 10, 20, 40, 80, 160, 320, 640),
)
GENERATED_TOKENS = Counter("model_server_generated_tokens_total", "Tokens generated")
EMBEDDED_TEXTS = Counter("model_server_embedded_texts_total", "Texts embedded")

SERVICE_NAME = model_pb2.DESCRIPTOR.services_by_name["ModelService"].full_name
OVERFLOW = {
    model_pb2.OVERFLOW_TRUNCATE: TRUNCATE,
    model_pb2.OVERFLOW_SPLIT: SPLIT,
    model_pb2.OVERFLOW_ERROR: ERROR,
}


@dataclass
class Settings:
    model: str  # a path, a packaged model name, or an s3:// URI
    role: str
    sha256: str = ""
    context_size: int = 2048
    threads: int | None = None
    max_queue: int = 64
    default_max_tokens: int = 256
    parallel: int = 4  # generations decoded together


class ModelServer:
    """Owns the engine and its scheduler; shared by the gRPC and HTTP fronts."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.engine: Engine | None = None
        self.scheduler: Scheduler | None = None
        self.health = health.HealthServicer()
        self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        self.load_error: Exception | None = None

    def _set_health(self, status) -> None:
        self.health.set("", status)
        self.health.set(SERVICE_NAME, status)

    def load(self) -> None:
        """Loads the model (blocking), then reports SERVING."""
        started = time.monotonic()
        try:
            path, sha256 = resolve(self.settings.model, self.settings.sha256)
            self.engine = Engine(
                path,
                self.settings.role,
                sha256=sha256,
                context_size=self.settings.context_size,
                threads=self.settings.threads,
                parallel=self.settings.parallel,
            )
        except (ModelError, ValueError, OSError) as err:
            self.load_error = err
            log.error("model load failed", extra={"model": self.settings.model, "error": str(err)})
            raise
        self.scheduler = Scheduler(self.engine, self.settings.max_queue)
        self._set_health(health_pb2.HealthCheckResponse.SERVING)
        log.info(
            "model loaded",
            extra={"model": self.engine.info.name, "role": self.settings.role,
                   "context_size": self.engine.window,
                   "parallel": self.settings.parallel if self.engine.decoder else None,
                   "seconds": round(time.monotonic() - started, 2)},
        )

    def load_in_background(self) -> threading.Thread:
        thread = threading.Thread(target=self._load_quietly, name="model-load", daemon=True)
        thread.start()
        return thread

    def _load_quietly(self) -> None:
        try:
            self.load()
        except Exception:  # already logged; health stays NOT_SERVING
            pass

    def stop(self) -> None:
        self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        if self.scheduler is not None:
            self.scheduler.stop(timeout=30)

    def ready_engine(self) -> Engine:
        if self.engine is None:
            detail = f": {self.load_error}" if self.load_error else " yet"
            raise ModelNotReady(f"the model is not loaded{detail}")
        return self.engine

    def generate(self, client: str, params: GenerateParams) -> GenerateJob:
        job = GenerateJob(self.ready_engine().prepare(params))  # bad requests fail here, not queued
        self.scheduler.submit(client, job)
        return job

    def embed(self, client: str, texts: list[str], overflow: str, timeout: float | None):
        self.ready_engine().require(EMBEDDING)
        job = EmbedJob(texts, overflow)
        self.scheduler.submit(client, job)
        return job.future.result(timeout)


class ModelNotReady(Exception):
    pass


def status_of(err: BaseException) -> grpc.StatusCode:
    if isinstance(err, WrongRole):
        return grpc.StatusCode.FAILED_PRECONDITION
    if isinstance(err, InvalidRequest):
        return grpc.StatusCode.INVALID_ARGUMENT
    if isinstance(err, QueueFull):
        return grpc.StatusCode.RESOURCE_EXHAUSTED
    if isinstance(err, (ModelNotReady, Stopped)):
        return grpc.StatusCode.UNAVAILABLE
    if isinstance(err, (TimeoutError, futures.TimeoutError)):
        return grpc.StatusCode.DEADLINE_EXCEEDED
    return grpc.StatusCode.INTERNAL


def generate_params(request: model_pb2.GenerateRequest, default_max_tokens: int) -> GenerateParams:
    if request.max_tokens < 0:
        raise InvalidRequest("max_tokens must not be negative")
    if request.HasField("temperature") and not 0 <= request.temperature <= 2:
        raise InvalidRequest("temperature must be within [0, 2]")
    if request.HasField("top_p") and not 0 < request.top_p <= 1:
        raise InvalidRequest("top_p must be within (0, 1]")
    params = GenerateParams(
        prompt=request.prompt,
        messages=[{"role": m.role, "content": m.content} for m in request.messages],
        max_tokens=request.max_tokens or default_max_tokens,
        stop=list(request.stop),
        seed=request.seed if request.HasField("seed") else None,
        json_schema=request.json_schema,
        grammar=request.grammar,
    )
    if request.HasField("temperature"):
        params.temperature = request.temperature
    if request.HasField("top_p"):
        params.top_p = request.top_p
    return params


class ModelServicer(model_pb2_grpc.ModelServiceServicer):
    def __init__(self, server: ModelServer):
        self.server = server

    def _abort(self, context, method: str, started: float, err: BaseException):
        code = status_of(err)
        REQUEST_SECONDS.labels(method, code.name).observe(time.monotonic() - started)
        if code == grpc.StatusCode.INTERNAL:
            log.exception("request failed", extra={"method": method})
        context.abort(code, str(err))

    def Generate(self, request, context):
        started = time.monotonic()
        try:
            params = generate_params(request, self.server.settings.default_max_tokens)
            job = self.server.generate(context.peer(), params)
        except Exception as err:
            self._abort(context, "Generate", started, err)
        # The RPC ending for any reason (cancel, deadline, disconnect) stops
        # the generation between two tokens.
        if not context.add_callback(job.cancel):
            job.cancel()  # the RPC has already ended
        first = None
        try:
            for chunk in job.results():
                if first is None and chunk.text:
                    first = time.monotonic()
                    FIRST_TOKEN_SECONDS.observe(first - started)
                if chunk.finish_reason:
                    self._record_generation(chunk, first)
                    yield model_pb2.GenerateResponse(
                        finish_reason=chunk.finish_reason,
                        usage=model_pb2.Usage(
                            prompt_tokens=chunk.prompt_tokens,
                            completion_tokens=chunk.completion_tokens,
                        ),
                    )
                else:
                    yield model_pb2.GenerateResponse(text=chunk.text)
        except Exception as err:
            job.cancel()
            self._abort(context, "Generate", started, err)
        REQUEST_SECONDS.labels("Generate", "OK").observe(time.monotonic() - started)

    @staticmethod
    def _record_generation(chunk, first: float | None) -> None:
        GENERATED_TOKENS.inc(chunk.completion_tokens)
        if first is not None and chunk.completion_tokens > 1:
            elapsed = time.monotonic() - first
            if elapsed > 0:
                TOKENS_PER_SECOND.observe((chunk.completion_tokens - 1) / elapsed)

    def Embed(self, request, context):
        started = time.monotonic()
        try:
            if not request.texts:
                raise InvalidRequest("texts must not be empty")
            if request.overflow not in OVERFLOW:
                raise InvalidRequest(f"unknown overflow {request.overflow}")
            remaining = context.time_remaining()  # huge when the call has no deadline
            results = self.server.embed(
                context.peer(), list(request.texts), OVERFLOW[request.overflow],
                remaining if remaining < 86400 else None,
            )
        except Exception as err:
            self._abort(context, "Embed", started, err)
        EMBEDDED_TEXTS.inc(len(results))
        REQUEST_SECONDS.labels("Embed", "OK").observe(time.monotonic() - started)
        return model_pb2.EmbedResponse(
            embeddings=[
                model_pb2.Embedding(
                    values=r.vector.tolist(), tokens=r.tokens, truncated=r.truncated, chunks=r.chunks
                )
                for r in results
            ]
        )

    def Info(self, request, context):
        try:
            info = self.server.ready_engine().info
        except ModelNotReady as err:
            context.abort(grpc.StatusCode.UNAVAILABLE, str(err))
        return model_pb2.InfoResponse(
            model=info.name,
            sha256=info.sha256,
            role=info.role,
            context_size=info.context_size,
            embedding_dimension=info.embedding_dimension,
            chat_template=info.chat_template,
        )

    def CountTokens(self, request, context):
        try:
            counts = self.server.ready_engine().count_tokens(list(request.texts))
        except ModelNotReady as err:
            context.abort(grpc.StatusCode.UNAVAILABLE, str(err))
        return model_pb2.CountTokensResponse(counts=counts)


def create_server(address: str, model_server: ModelServer, workers: int = 32) -> tuple[grpc.Server, int]:
    """A started-ready (not started) gRPC server bound to address; port 0 picks one."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="grpc"),
        options=[("grpc.max_receive_message_length", 64 << 20),
                 ("grpc.max_send_message_length", 64 << 20)],
    )
    model_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(model_server), server)
    health_pb2_grpc.add_HealthServicer_to_server(model_server.health, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"cannot bind {address}")
    return server, port
