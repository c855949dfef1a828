"""The Agent gRPC service: Ask, Chat (streaming), ListSpaces, health, reflection."""

from __future__ import annotations

import contextlib
import logging
from concurrent import futures

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from monologue.api.v1 import agent_pb2 as pb
from monologue.api.v1 import agent_pb2_grpc

from .answering import Agent, Answer, SpaceNotAllowed
from .embedder import EmbedderUnavailable
from .generator import GeneratorUnavailable
from .memory import StoreUnavailable
from .telemetry import AgentMetrics

log = logging.getLogger("monologue.agent")
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["AgentService"].full_name
MAX_TOP_K = 100


def _timestamp(ns: int) -> Timestamp:
    ts = Timestamp()
    ts.FromNanoseconds(int(ns))
    return ts


def to_proto(answer: Answer) -> pb.AskResponse:
    return pb.AskResponse(
        answer=answer.text,
        citations=[
            pb.Citation(number=c.number, space=c.hit.space, line_id=c.hit.line_id,
                        timestamp=_timestamp(c.hit.timestamp_ns), labels=c.hit.labels, line=c.hit.text,
                        score=c.hit.score, template_id=c.hit.template_id, cited=c.cited,
                        via=c.hit.via)
            for c in answer.citations
        ],
        stats=[
            pb.TemplateStat(space=s.space, template_id=s.template_id, template=s.template, count=s.count,
                            first_seen=_timestamp(s.first_seen_ns), last_seen=_timestamp(s.last_seen_ns),
                            top_values=[pb.LabelCount(key=k, value=v, count=n) for k, v, n in s.top_values])
            for s in answer.stats
        ],
        timings=pb.Timings(recall_ms=answer.recall_ms, prompt_tokens=answer.prompt_tokens,
                           generation_ms=answer.generation_ms, completion_tokens=answer.completion_tokens),
        unsupported_figures=answer.unsupported_figures,
        time_range=pb.TimeRange(start=_timestamp(answer.since_ns) if answer.since_ns is not None else None,
                                end=_timestamp(answer.until_ns) if answer.until_ns is not None else None),
    )


def _options(request: pb.AskRequest) -> dict:
    if not request.question.strip():
        raise ValueError("question must not be empty")
    if not 0 <= request.top_k <= MAX_TOP_K:
        raise ValueError(f"top_k must be within [0, {MAX_TOP_K}]")
    since = request.time_range.start.ToNanoseconds() if request.time_range.HasField("start") else None
    until = request.time_range.end.ToNanoseconds() if request.time_range.HasField("end") else None
    if since is not None and until is not None and since >= until:
        raise ValueError("time_range.start must be before time_range.end")
    return dict(spaces=list(request.spaces), since_ns=since, until_ns=until, top_k=request.top_k,
                retrieval_only=request.retrieval_only)


def _code(err: Exception) -> grpc.StatusCode:
    if isinstance(err, SpaceNotAllowed):
        return grpc.StatusCode.PERMISSION_DENIED
    if isinstance(err, ValueError):
        return grpc.StatusCode.INVALID_ARGUMENT
    if isinstance(err, (EmbedderUnavailable, GeneratorUnavailable, StoreUnavailable, ConnectionError)):
        return grpc.StatusCode.UNAVAILABLE
    return grpc.StatusCode.INTERNAL


class AgentServicer(agent_pb2_grpc.AgentServiceServicer):
    def __init__(self, agent: Agent, metrics: AgentMetrics):
        self.agent, self.metrics = agent, metrics

    @contextlib.contextmanager
    def _call(self, method: str, context):
        """Counts the call by how it ended; a failure aborts it with its status code."""
        with self.metrics.request(method) as outcome:
            try:
                yield
            except Exception as err:
                code = _code(err)
                outcome["code"] = code.name
                if code == grpc.StatusCode.INTERNAL:
                    log.exception("request failed")
                context.abort(code, str(err))
            except GeneratorExit:  # a stream whose client left
                outcome["code"] = grpc.StatusCode.CANCELLED.name
                raise
            if not context.is_active():
                outcome["code"] = grpc.StatusCode.CANCELLED.name

    def Ask(self, request, context):
        with self._call("Ask", context):
            answer = self.agent.ask(request.question, **_options(request))
            self.metrics.answered(answer)
            return to_proto(answer)

    def Chat(self, request, context):
        with self._call("Chat", context):
            options = _options(request.ask)
            for item in self.agent.stream(request.ask.question, session_id=request.session_id, **options):
                if not context.is_active():
                    return  # the client left: stop generating
                if isinstance(item, Answer):
                    self.metrics.answered(item)
                    yield pb.ChatResponse(done=to_proto(item))
                else:
                    yield pb.ChatResponse(token=item)

    def ListSpaces(self, request, context):
        with self._call("ListSpaces", context):
            return pb.ListSpacesResponse(spaces=[
                pb.SpaceInfo(name=name, collection=memory.collection, lines=memory.line_count())
                for name, memory in self.agent.memories.items()
            ])


def create_server(address: str, agent: Agent, workers: int = 16, max_concurrent: int = 64,
                  metrics: AgentMetrics | None = None) -> tuple[grpc.Server, int, health.HealthServicer]:
    """A gRPC server (not started) bound to address; port 0 picks one. metrics:
    where its requests are counted (telemetry.serve_http serves them).

    Beyond max_concurrent RPCs in flight, new ones are refused with
    RESOURCE_EXHAUSTED at once: back-pressure, not a growing queue.
    """
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="agent"),
                         maximum_concurrent_rpcs=max_concurrent)
    agent_pb2_grpc.add_AgentServiceServicer_to_server(AgentServicer(agent, metrics or AgentMetrics()), server)
    health_servicer = health.HealthServicer()
    for name in ("", SERVICE_NAME):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"cannot bind {address}")
    return server, port, health_servicer
