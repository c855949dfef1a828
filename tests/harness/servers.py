"""The real servers of the test harness: how to configure and start each one.

Each `start_*` function takes a working directory and returns a handle with
the server's address; the pytest fixtures in conftest.py own their
lifetime (one per test session).
"""

from __future__ import annotations

import datetime
import ipaddress
import secrets
import ssl
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

from .process import Server, binary, free_port, http_ok


# ---------------------------------------------------------------- etcd + kube-apiserver


@dataclass
class Kubernetes:
    etcd: Server
    apiserver: Server
    url: str
    token: str
    kubeconfig: Path
    kubectl: Path

    def stop(self) -> None:
        self.apiserver.stop()
        self.etcd.stop()


def _self_signed(workdir: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "monologue-test-apiserver")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = workdir / "apiserver.crt", workdir / "apiserver.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def _service_account_keys(workdir: Path) -> tuple[Path, Path]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private, public = workdir / "sa.key", workdir / "sa.pub"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public


def start_kubernetes(workdir: Path, logs: Path) -> Kubernetes:
    workdir.mkdir(parents=True, exist_ok=True)
    etcd_bin = binary("etcd", "ETCD_VERSION")
    apiserver_bin = binary("kube-apiserver", "KUBERNETES_VERSION")
    kubectl_bin = binary("kubectl", "KUBERNETES_VERSION")

    client, peer = free_port(), free_port()
    etcd = Server(
        "etcd",
        [
            str(etcd_bin),
            "--name=test",
            f"--data-dir={workdir / 'etcd'}",
            f"--listen-client-urls=http://127.0.0.1:{client}",
            f"--advertise-client-urls=http://127.0.0.1:{client}",
            f"--listen-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-cluster=test=http://127.0.0.1:{peer}",
            "--log-level=warn",
            "--unsafe-no-fsync",  # test data only: durability is not under test here
        ],
        logs / "etcd.log",
    ).start(lambda: http_ok(f"http://127.0.0.1:{client}/health"), timeout=30)

    cert, key = _self_signed(workdir)
    sa_private, sa_public = _service_account_keys(workdir)
    token = secrets.token_hex(16)
    (workdir / "tokens.csv").write_text(f'{token},monologue-test-admin,1,"system:masters"\n')
    port = free_port()
    apiserver = Server(
        "kube-apiserver",
        [
            str(apiserver_bin),
            f"--etcd-servers=http://127.0.0.1:{client}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={port}",
            f"--tls-cert-file={cert}",
            f"--tls-private-key-file={key}",
            f"--cert-dir={workdir / 'certs'}",
            f"--token-auth-file={workdir / 'tokens.csv'}",
            "--authorization-mode=RBAC",
            "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-account-key-file={sa_public}",
            f"--service-account-signing-key-file={sa_private}",
            "--service-cluster-ip-range=10.96.0.0/16",
            "--enable-priority-and-fairness=false",
            "--v=1",
        ],
        logs / "kube-apiserver.log",
    )
    context = ssl.create_default_context(cafile=str(cert))
    url = f"https://127.0.0.1:{port}"
    try:
        apiserver.start(
            lambda: http_ok(f"{url}/readyz", {"Authorization": f"Bearer {token}"}, context),
            timeout=90,
        )
    except Exception:
        etcd.stop()
        raise

    kubeconfig = workdir / "kubeconfig"
    kubeconfig.write_text(
        textwrap.dedent(
            f"""\
            apiVersion: v1
            kind: Config
            clusters:
            - name: test
              cluster:
                server: {url}
                certificate-authority: {cert}
            users:
            - name: admin
              user:
                token: {token}
            contexts:
            - name: test
              context: {{cluster: test, user: admin, namespace: default}}
            current-context: test
            """
        )
    )
    return Kubernetes(etcd, apiserver, url, token, kubeconfig, kubectl_bin)


# ---------------------------------------------------------------- Loki


@dataclass
class Loki:
    server: Server
    url: str

    def stop(self) -> None:
        self.server.stop()


def start_loki(workdir: Path, logs: Path) -> Loki:
    workdir.mkdir(parents=True, exist_ok=True)
    loki_bin = binary("loki", "LOKI_VERSION")
    http, grpc, gossip = free_port(), free_port(), free_port()
    config = workdir / "loki.yaml"
    config.write_text(
        textwrap.dedent(
            f"""\
            auth_enabled: false
            server:
              http_listen_address: 127.0.0.1
              http_listen_port: {http}
              grpc_listen_address: 127.0.0.1
              grpc_listen_port: {grpc}
              log_level: warn
            common:
              path_prefix: {workdir}
              instance_addr: 127.0.0.1
              replication_factor: 1
              ring:
                kvstore:
                  store: inmemory
              storage:
                filesystem:
                  chunks_directory: {workdir}/chunks
                  rules_directory: {workdir}/rules
            memberlist:
              bind_addr: [127.0.0.1]
              bind_port: {gossip}
            ingester:
              lifecycler:
                min_ready_duration: 0s
                final_sleep: 0s
            schema_config:
              configs:
                - from: 2020-01-01
                  store: tsdb
                  object_store: filesystem
                  schema: v13
                  index:
                    prefix: index_
                    period: 24h
            limits_config:
              reject_old_samples: false
              allow_structured_metadata: true
              max_entries_limit_per_query: 100000
              ingestion_rate_mb: 64
              ingestion_burst_size_mb: 128
            analytics:
              reporting_enabled: false
            """
        )
    )
    url = f"http://127.0.0.1:{http}"
    server = Server(
        "loki", [str(loki_bin), f"-config.file={config}", "-target=all"], logs / "loki.log"
    ).start(lambda: http_ok(f"{url}/ready"), timeout=90)
    return Loki(server, url)


# ---------------------------------------------------------------- Weaviate


@dataclass
class Weaviate:
    server: Server
    host: str
    http_port: int
    grpc_port: int

    def stop(self) -> None:
        self.server.stop()


# As deploy/weaviate sets them, and why: Weaviate 1.35 counts a collection's
# objects for every BM25 query (the N of idf) by probing the disk for each key
# of the unflushed memtable: 360 ms a query with 100k fresh objects, 3 ms once
# flushed (measured). Small, soon-flushed memtables keep queries fast while
# the indexer writes.
WEAVIATE_MEMTABLES = {
    "PERSISTENCE_MEMTABLES_FLUSH_DIRTY_AFTER_SECONDS": "5",
    "PERSISTENCE_MEMTABLES_MIN_ACTIVE_DURATION_SECONDS": "1",
    "PERSISTENCE_MEMTABLES_MAX_ACTIVE_DURATION_SECONDS": "10",
    "PERSISTENCE_MEMTABLES_MAX_SIZE_MB": "16",
}


def start_weaviate(workdir: Path, logs: Path, settings: dict[str, str] | None = None) -> Weaviate:
    """settings: environment beside the fixed ones; WEAVIATE_MEMTABLES by default."""
    workdir.mkdir(parents=True, exist_ok=True)
    weaviate_bin = binary("weaviate", "WEAVIATE_VERSION")
    http, grpc = free_port(), free_port()
    gossip, data, raft, raft_rpc = free_port(), free_port(), free_port(), free_port()
    env = {
        "AUTHENTICATION_ANONYMOUS_ACCESS_ENABLED": "true",
        "PERSISTENCE_DATA_PATH": str(workdir / "data"),
        "DEFAULT_VECTORIZER_MODULE": "none",
        "ENABLE_MODULES": "",
        "GRPC_PORT": str(grpc),
        "CLUSTER_HOSTNAME": "node1",
        "CLUSTER_ADVERTISE_ADDR": "127.0.0.1",
        "CLUSTER_BIND_ADDR": "127.0.0.1",
        "CLUSTER_GOSSIP_BIND_PORT": str(gossip),
        "CLUSTER_DATA_BIND_PORT": str(data),
        "RAFT_PORT": str(raft),
        "RAFT_INTERNAL_RPC_PORT": str(raft_rpc),
        "RAFT_BOOTSTRAP_EXPECT": "1",
        "RAFT_JOIN": f"node1:{raft}",
        "DISABLE_TELEMETRY": "true",
        "GO_PROFILING_PORT": str(free_port()),  # default :6060 clashes between instances
        "LOG_LEVEL": "warning",
        "QUERY_DEFAULTS_LIMIT": "25",
        **(WEAVIATE_MEMTABLES if settings is None else settings),
    }
    server = Server(
        "weaviate",
        [str(weaviate_bin), "--host", "127.0.0.1", "--port", str(http), "--scheme", "http"],
        logs / "weaviate.log",
        env=env,
    ).start(lambda: http_ok(f"http://127.0.0.1:{http}/v1/.well-known/ready"), timeout=90)
    return Weaviate(server, "127.0.0.1", http, grpc)


# ---------------------------------------------------------------- S3 (moto)


@dataclass
class S3:
    server: Server
    endpoint: str
    region: str = "us-east-1"
    access_key: str = "monologue-test"
    secret_key: str = "monologue-test-secret"

    @property
    def env(self) -> dict[str, str]:
        """The standard AWS variables every client here reads."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
        }

    def stop(self) -> None:
        self.server.stop()


def start_s3(workdir: Path, logs: Path, port: int | None = None) -> S3:
    workdir.mkdir(parents=True, exist_ok=True)
    moto = Path(sys.executable).with_name("moto_server")
    if not moto.exists():
        from .process import ServerUnavailable

        raise ServerUnavailable(f"{moto} missing: moto[server] is not installed; run `make setup`")
    port = port or free_port()
    endpoint = f"http://127.0.0.1:{port}"
    server = Server(
        "s3", [str(moto), "-H", "127.0.0.1", "-p", str(port)], logs / "s3.log", cwd=workdir
    ).start(lambda: http_ok(f"{endpoint}/moto-api/"), timeout=30)
    return S3(server, endpoint)
