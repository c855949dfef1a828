"""An OpenAI-compatible HTTP API over the same model, plus metrics and health.

/v1/chat/completions (with streaming), /v1/completions, /v1/embeddings,
/v1/models, and /metrics, /healthz, /readyz, so the usual tools and
Prometheus work against a model server.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .engine import SPLIT, TRUNCATE, GenerateParams, InvalidRequest
from .service import ModelNotReady, ModelServer, status_of

HTTP_STATUS = {
    "INVALID_ARGUMENT": HTTPStatus.BAD_REQUEST,
    "FAILED_PRECONDITION": HTTPStatus.BAD_REQUEST,
    "RESOURCE_EXHAUSTED": HTTPStatus.TOO_MANY_REQUESTS,
    "UNAVAILABLE": HTTPStatus.SERVICE_UNAVAILABLE,
    "DEADLINE_EXCEEDED": HTTPStatus.GATEWAY_TIMEOUT,
}


def _params(body: dict, default_max_tokens: int, chat: bool) -> GenerateParams:
    def number(key, default, kind=float):
        value = body.get(key, default)
        if value is None:
            return default
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise InvalidRequest(f"{key} must be a number")
        return kind(value)

    stop = body.get("stop") or []
    stop = [stop] if isinstance(stop, str) else stop
    params = GenerateParams(
        max_tokens=number("max_tokens", default_max_tokens, int),
        temperature=number("temperature", 0.8),
        top_p=number("top_p", 0.95),
        stop=list(stop),
        seed=body.get("seed"),
    )
    if not 0 <= params.temperature <= 2:
        raise InvalidRequest("temperature must be within [0, 2]")
    if chat:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise InvalidRequest("messages must be a non-empty list")
        params.messages = [{"role": str(m.get("role")), "content": str(m.get("content", ""))} for m in messages]
    else:
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt:
            raise InvalidRequest("prompt must be a non-empty string")
        params.prompt = prompt
    response_format = body.get("response_format") or {}
    if response_format.get("type") == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema")
        params.json_schema = json.dumps(schema)
    elif response_format.get("type") == "json_object":
        params.json_schema = json.dumps(response_format.get("schema") or {"type": "object"})
    return params


def make_handler(model: ModelServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_args):  # requests are measured in metrics, not logged
            pass

        # -------------------------------------------------------- plumbing

        def _send(self, status: int, body: bytes, content_type="application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, payload: dict) -> None:
            self._send(status, json.dumps(payload).encode())

        def _error(self, err: BaseException) -> None:
            code = status_of(err).name
            status = HTTP_STATUS.get(code, HTTPStatus.INTERNAL_SERVER_ERROR)
            self._json(status, {"error": {"message": str(err), "type": code.lower(), "code": code}})

        def _body(self) -> dict:
            length = int(self.headers.get("Content-Length") or 0)
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
            except json.JSONDecodeError as err:
                raise InvalidRequest(f"request body is not JSON: {err}") from err
            if not isinstance(body, dict):
                raise InvalidRequest("request body must be a JSON object")
            return body

        # -------------------------------------------------------- routes

        def do_GET(self):
            if self.path == "/metrics":
                self._send(200, generate_latest(), CONTENT_TYPE_LATEST)
            elif self.path == "/healthz":
                self._send(200, b"ok\n", "text/plain")
            elif self.path == "/readyz":
                ready = model.engine is not None
                self._send(200 if ready else 503, b"ready\n" if ready else b"loading\n", "text/plain")
            elif self.path == "/v1/models":
                try:
                    info = model.ready_engine().info
                except ModelNotReady as err:
                    return self._error(err)
                self._json(200, {"object": "list", "data": [
                    {"id": info.name, "object": "model", "created": 0, "owned_by": "monologue"}]})
            else:
                self._json(404, {"error": {"message": f"no route {self.path}", "code": "NOT_FOUND"}})

        def do_POST(self):
            routes = {
                "/v1/chat/completions": lambda b: self._complete(b, chat=True),
                "/v1/completions": lambda b: self._complete(b, chat=False),
                "/v1/embeddings": self._embeddings,
            }
            route = routes.get(self.path)
            if route is None:
                return self._json(404, {"error": {"message": f"no route {self.path}", "code": "NOT_FOUND"}})
            try:
                route(self._body())
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client left; its job was cancelled
            except Exception as err:
                self._error(err)

        def _complete(self, body: dict, chat: bool) -> None:
            params = _params(body, model.settings.default_max_tokens, chat)
            job = model.generate(self.client_address[0], params)
            try:  # cancelled on every way out (a failed write included): the worker stops at once
                self._respond(job, chat, stream=bool(body.get("stream")))
            finally:
                job.cancel()

        def _respond(self, job, chat: bool, stream: bool) -> None:
            name = model.ready_engine().info.name
            ident = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex[:24]}"
            created = int(time.time())
            kind = "chat.completion" if chat else "text_completion"

            def choice(text: str, finish: str | None, stream: bool) -> dict:
                if not chat:
                    return {"index": 0, "text": text, "finish_reason": finish, "logprobs": None}
                key = "delta" if stream else "message"
                content = {"content": text} if stream else {"role": "assistant", "content": text}
                return {"index": 0, key: content, "finish_reason": finish}

            if not stream:
                text, last = [], None
                for chunk in job.results():
                    text.append(chunk.text)
                    last = chunk
                payload = {
                    "id": ident, "object": kind, "created": created, "model": name,
                    "choices": [choice("".join(text), last.finish_reason, False)],
                    "usage": {"prompt_tokens": last.prompt_tokens,
                              "completion_tokens": last.completion_tokens,
                              "total_tokens": last.prompt_tokens + last.completion_tokens},
                }
                return self._json(200, payload)

            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            kind = f"{kind}.chunk" if chat else kind
            try:
                for chunk in job.results():
                    event = {"id": ident, "object": kind, "created": created, "model": name,
                             "choices": [choice(chunk.text, chunk.finish_reason or None, True)]}
                    self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
                    self.wfile.flush()
                self.wfile.write(b"data: [DONE]\n\n")
            except Exception as err:
                message = {"error": {"message": str(err), "code": status_of(err).name}}
                self.wfile.write(f"data: {json.dumps(message)}\n\n".encode())

        def _embeddings(self, body: dict) -> None:
            texts = body.get("input")
            texts = [texts] if isinstance(texts, str) else texts
            if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
                raise InvalidRequest("input must be a string or a non-empty list of strings")
            overflow = SPLIT if body.get("overflow") == "split" else TRUNCATE
            results = model.embed(self.client_address[0], texts, overflow, timeout=None)
            tokens = sum(r.tokens for r in results)
            self._json(200, {
                "object": "list",
                "model": model.ready_engine().info.name,
                "data": [{"object": "embedding", "index": i, "embedding": r.vector.tolist()}
                         for i, r in enumerate(results)],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            })

    return Handler


def start_http(address: str, port: int, model: ModelServer) -> tuple[ThreadingHTTPServer, int]:
    """Serves the HTTP API from a daemon thread; port 0 picks one."""
    httpd = ThreadingHTTPServer((address, port), make_handler(model))
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, name="http", daemon=True).start()
    return httpd, httpd.server_address[1]
