"""The operator's settings, read once from its environment (the operator Deployment's env)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import metadata
from urllib.parse import urlparse


def _version() -> str:
    try:
        return metadata.version("monologue-operator")
    except metadata.PackageNotFoundError:  # running from a source tree without install
        return "0.1.0"


class SettingsError(ValueError):
    """An environment variable of the operator has an unusable value."""


@dataclass(frozen=True)
class Settings:
    agent_image: str
    shipper_image: str
    model_server_image: str
    image_pull_policy: str
    weaviate_url: str
    weaviate_grpc_port: int
    weaviate_api_key: str | None
    loki_url: str
    aws_endpoint_url: str | None
    aws_region: str | None
    s3_path_style: bool
    resync_seconds: float

    @property
    def weaviate_host(self) -> str:
        return urlparse(self.weaviate_url).hostname or ""

    @property
    def weaviate_http_port(self) -> int:
        parsed = urlparse(self.weaviate_url)
        return parsed.port or (443 if parsed.scheme == "https" else 80)

    @property
    def weaviate_secure(self) -> bool:
        return urlparse(self.weaviate_url).scheme == "https"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "Settings":
        env = dict(os.environ if env is None else env)
        tag = env.get("MONOLOGUE_IMAGE_TAG", _version())
        registry = env.get("MONOLOGUE_IMAGE_REGISTRY", "monologue")
        weaviate_url = env.get("WEAVIATE_URL", "http://weaviate.monologue.svc:8080").rstrip("/")
        if urlparse(weaviate_url).scheme not in ("http", "https") or not urlparse(weaviate_url).hostname:
            raise SettingsError(f"WEAVIATE_URL={weaviate_url!r} is not an http(s)://host:port URL")
        endpoint = env.get("AWS_ENDPOINT_URL") or None
        path_style = env.get("MONOLOGUE_S3_PATH_STYLE", "true" if endpoint else "false").lower()
        if path_style not in ("true", "false"):
            raise SettingsError(f"MONOLOGUE_S3_PATH_STYLE={path_style!r} must be true or false")
        pull = env.get("MONOLOGUE_IMAGE_PULL_POLICY", "IfNotPresent")
        if pull not in ("Always", "IfNotPresent", "Never"):
            raise SettingsError(f"MONOLOGUE_IMAGE_PULL_POLICY={pull!r} must be Always, IfNotPresent or Never")
        return cls(
            agent_image=env.get("MONOLOGUE_AGENT_IMAGE", f"{registry}/agent:{tag}"),
            shipper_image=env.get("MONOLOGUE_SHIPPER_IMAGE", f"{registry}/loki-shipper:{tag}"),
            model_server_image=env.get("MONOLOGUE_MODEL_SERVER_IMAGE", f"{registry}/model-server:{tag}"),
            image_pull_policy=pull,
            weaviate_url=weaviate_url,
            weaviate_grpc_port=_int(env, "WEAVIATE_GRPC_PORT", 50051),
            weaviate_api_key=env.get("WEAVIATE_API_KEY") or None,
            loki_url=env.get("MONOLOGUE_LOKI_URL", "http://loki.monologue.svc:3100").rstrip("/"),
            aws_endpoint_url=endpoint,
            aws_region=env.get("AWS_REGION") or None,
            s3_path_style=path_style == "true",
            resync_seconds=float(_int(env, "MONOLOGUE_RESYNC_SECONDS", 60)),
        )


def _int(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not an integer") from None
    if value <= 0:
        raise SettingsError(f"{name}={raw!r} must be positive")
    return value
