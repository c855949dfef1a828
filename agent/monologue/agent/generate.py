"""Realistic sample logs for demos and tests: `monologue generate shop`.

A small shop of services (gateway, checkout, payments, inventory, postgres)
logging in their own formats (logfmt, JSON, plain text). Requests carry ids
across services; an incident unfolds with a cause: the postgres connection
pool runs out, payments time out, checkouts fail, the gateway returns 502s.
Around it, the usual noise: health checks, cache misses, a deploy, a disk
warning, failed logins. Deterministic for a given seed.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from typing import Iterator

KINDS = ("shop",)
USERS = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi"]
SKUS = ["sku-1001", "sku-1002", "sku-2040", "sku-3300", "sku-4711"]
PODS = {
    "gateway": ["gateway-7c9f-abcde", "gateway-7c9f-fghij"],
    "checkout": ["checkout-5d8b-klmno"],
    "payments": ["payments-6f4a-pqrst", "payments-6f4a-uvwxy"],
    "inventory": ["inventory-9e1c-zabcd"],
    "postgres": ["postgres-0"],
}


def _iso(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class Shop:
    def __init__(self, seed: int, start: dt.datetime, lines: int):
        self.rng = random.Random(seed)
        self.t = start
        self.total = lines
        # The incident takes the middle tenth of the run.
        self.incident = range(int(lines * 0.55), int(lines * 0.65))

    def _tick(self) -> dt.datetime:
        self.t += dt.timedelta(milliseconds=self.rng.randint(5, 400))
        return self.t

    def _pod(self, service: str) -> str:
        return self.rng.choice(PODS[service])

    def gateway(self, req: str, path: str, status: int, ms: int) -> str:
        method = "POST" if path.startswith("/api/checkout") else "GET"
        return (f'ts={_iso(self._tick())} level={"error" if status >= 500 else "info"} service=gateway '
                f'pod={self._pod("gateway")} req_id={req} method={method} path={path} status={status} '
                f'duration_ms={ms} user_agent="shop-web/2.3"')

    def json_line(self, service: str, level: str, msg: str, **fields) -> str:
        entry = {"time": _iso(self._tick()), "level": level, "service": service,
                 "pod": self._pod(service), "msg": msg, **fields}
        return json.dumps(entry)

    def plain(self, service: str, level: str, msg: str) -> str:
        return f"{self._tick().strftime('%Y-%m-%d %H:%M:%S,%f')[:-3]} {level.upper()} [{self._pod(service)}] {msg}"

    def request(self, produced: int) -> list[str]:
        rng = self.rng
        req = f"req-{rng.getrandbits(40):010x}"
        user = rng.choice(USERS)
        in_incident = produced in self.incident
        kind = rng.random()
        if kind < 0.35:
            sku = rng.choice(SKUS)
            ms = rng.randint(3, 40)
            return [self.plain("inventory", "info", f"stock lookup sku={sku} available={rng.randint(0, 90)} took {ms} ms"),
                    self.gateway(req, f"/api/items/{sku}", 200, ms + rng.randint(1, 5))]
        if kind < 0.55:
            order = f"ord-{rng.randint(10000, 99999)}"
            amount = f"{rng.randint(5, 400)}.{rng.randint(0, 99):02d}"
            out = [self.json_line("checkout", "info", "checkout started", req_id=req, user=user, order_id=order)]
            if in_incident and rng.random() < 0.7:
                wait = rng.randint(5000, 5100)
                out += [
                    self.json_line("payments", "error", "payment authorization failed: timeout acquiring database connection",
                                   req_id=req, order_id=order, waited_ms=wait, pool="payments-db", cause="connection pool exhausted"),
                    self.json_line("checkout", "error", "checkout failed: payments returned 503", req_id=req, order_id=order,
                                   user=user, upstream="payments"),
                    self.gateway(req, "/api/checkout", 502, wait + rng.randint(10, 60)),
                ]
            else:
                ms = rng.randint(40, 300)
                out += [
                    self.json_line("payments", "info", "payment authorized", req_id=req, order_id=order,
                                   amount_eur=amount, took_ms=ms),
                    self.json_line("checkout", "info", "order placed", req_id=req, order_id=order, user=user),
                    self.gateway(req, "/api/checkout", 201, ms + rng.randint(20, 80)),
                ]
            return out
        if kind < 0.62:
            if rng.random() < 0.3:
                return [self.json_line("gateway", "warn", "login failed: invalid password", user=user,
                                       client_ip=f"203.0.113.{rng.randint(1, 254)}", req_id=req)]
            return [self.json_line("gateway", "info", "login succeeded", user=user, req_id=req)]
        if kind < 0.8:
            return [self.gateway(f"req-{rng.getrandbits(40):010x}", "/healthz", 200, rng.randint(0, 2))]
        if kind < 0.9:
            return [self.plain("inventory", "debug", f"cache miss key=item:{rng.choice(SKUS)} ttl=300s")]
        return [self.plain("postgres", "info", f"checkpoint complete: wrote {rng.randint(10, 900)} buffers "
                           f"({rng.random() * 3:.1f}%); write={rng.random() * 2:.3f} s")]

    def _events(self) -> list[tuple[int, object]]:
        """One-off events around the incident, at fixed points of the run (in lines)."""
        n, incident = self.total, self.incident
        return [
            (int(n * 0.2), lambda: [self.json_line("checkout", "info", "deploy finished", version="v2.14.0",
                                                   image="registry.local/shop/checkout:v2.14.0")]),
            (int(n * 0.3), lambda: [self.plain("postgres", "warning",
                                               "disk usage on /var/lib/postgresql at 91% (node worker-3)")]),
            (int(n * 0.35), lambda: [self.json_line(
                "payments", "info",
                "connected to database postgres://payments:S3cr3tPassw0rd@postgres:5432/payments", pool_size=20)]),
            (incident.start, lambda: [
                self.plain("postgres", "warning",
                           "too many connections for role \"payments\": 20 of 20 in use, 14 waiting"),
                self.json_line("payments", "warn", "database connection pool exhausted", pool="payments-db",
                               in_use=20, waiting=14)]),
            (incident.stop, lambda: [
                self.json_line("payments", "info", "database connection pool recovered", pool="payments-db",
                               in_use=6, waiting=0),
                self.plain("postgres", "info", "connections for role \"payments\" back to 6 of 20")]),
        ]

    def __iter__(self) -> Iterator[str]:
        events = self._events()
        produced = 0
        while produced < self.total:
            batch = []
            while events and produced >= events[0][0]:
                batch += events.pop(0)[1]()
            batch += self.request(produced)
            for line in batch[: self.total - produced]:
                yield line
            produced += len(batch)


def generate(kind: str, lines: int, seed: int = 7, start: dt.datetime | None = None) -> Iterator[str]:
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; known: {', '.join(KINDS)}")
    start = start or dt.datetime(2026, 11, 2, 9, 0, tzinfo=dt.timezone.utc)
    return iter(Shop(seed, start, lines))


def write_log(path, kind: str, lines: int, seed: int = 7) -> None:
    """A generated log as a file, one line each."""
    with open(path, "w") as out:
        for line in generate(kind, lines, seed):
            out.write(line + "\n")
