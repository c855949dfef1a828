"""The indexer: idempotent, restart-safe, redacting, robust to bad objects and outages."""

from __future__ import annotations

import threading

from monologue.agent.embedder import GrpcEmbedder
from monologue.agent.indexer import Indexer
from monologue.agent.ingest import ingest
from monologue.agent.memory import LanceStore
from monologue.agent.recall import SpaceMemory
from monologue.agent.space import Space

SECRETS = [
    "AKIAIOSFODNN7EXAMPLE",
    "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    "S3cr3tPassw0rd",
    "hunter22-very-secret",
    "alice.smith@example.com",
    "4111 1111 1111 1111",
    "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
    "MIIEowIBAAKCAQEA7bq98xyz",
]
SEEDED = [
    f"2026-11-02T09:00:00Z INFO using key {SECRETS[0]}",
    f"2026-11-02T09:00:01Z DEBUG aws_secret_access_key={SECRETS[1]}",
    f"2026-11-02T09:00:02Z INFO request Authorization: Bearer {SECRETS[2]}",
    f"2026-11-02T09:00:03Z INFO connected to postgres://payments:{SECRETS[3]}@db:5432/payments",
    f'{{"time": "2026-11-02T09:00:04Z", "level": "info", "msg": "login", "password": "{SECRETS[4]}"}}',
    f"2026-11-02T09:00:05Z INFO mail sent to {SECRETS[5]}",
    f"2026-11-02T09:00:06Z INFO charged card {SECRETS[6]} for 12.00 EUR",
    f"2026-11-02T09:00:07Z WARN token={SECRETS[7]} used from new ip",
    f"2026-11-02T09:00:08Z ERROR leaked -----BEGIN RSA PRIVATE KEY----- {SECRETS[8]} -----END RSA PRIVATE KEY-----",
]


def make_space(tmp_path, lines, name="shop"):
    log = tmp_path / f"{name}.log"
    log.write_text("\n".join(lines) + "\n")
    space = Space(name, str(tmp_path / "data"), collection=name)
    ingest(log, space.uri, show_progress=False)
    return space, LanceStore(str(tmp_path / "memory"))


def normal_lines(n, start=0):
    return [f"2026-11-02T10:{(i // 60) % 60:02d}:{i % 60:02d}Z INFO worker {i % 5} finished job {i} in {i % 97} ms"
            for i in range(start, start + n)]


def test_indexing_is_idempotent_and_survives_a_restart(tmp_path, local_embedder):
    space, store = make_space(tmp_path, normal_lines(300))
    first = Indexer(space, store, local_embedder).run_once()
    assert (first.objects, first.lines) == (1, 300) and first.new_templates >= 1
    assert store.count("shop") == 300

    restarted = Indexer(space, store, local_embedder)  # state read back from beside the data
    assert restarted.run_once().objects == 0
    more = tmp_path / "more.log"
    more.write_text("\n".join(normal_lines(50, start=300)) + "\n")
    ingest(more, space.uri, show_progress=False)
    report = restarted.run_once()
    assert (report.objects, report.lines, report.new_templates) == (1, 50, 0)
    assert store.count("shop") == 350

    # every line has its template in the Space's SQL views
    con = space.connect()
    assert con.execute("SELECT count(*) FROM logs WHERE template_id IS NULL").fetchone()[0] == 0
    lines, = con.execute("SELECT sum(lines) FROM templates").fetchone()
    assert lines == 350


def test_an_unreadable_object_is_quarantined_and_the_rest_indexed(tmp_path, local_embedder):
    space, store = make_space(tmp_path, normal_lines(20))
    bad = tmp_path / "data" / "dt=2026-11-02" / "broken.parquet"
    bad.write_bytes(b"PAR1 this is not parquet")
    report = Indexer(space, store, local_embedder).run_once()
    assert report.lines == 20
    assert report.quarantined == ["dt=2026-11-02/broken.parquet"]
    assert not bad.exists()
    assert (tmp_path / "data" / "_quarantine" / "dt=2026-11-02" / "broken.parquet").exists()


def test_seeded_secrets_never_reach_memory_or_recall(tmp_path, local_embedder):
    space, store = make_space(tmp_path, SEEDED + normal_lines(20))
    indexer = Indexer(space, store, local_embedder)
    indexer.run_once()
    stored = store.db.open_table("shop").to_arrow()
    memory_text = "\n".join(stored["text"].to_pylist() + stored["template"].to_pylist())
    embedded_text = "\n".join(indexer.miner.template(t) for t in indexer.template_vectors)
    index_files = b"".join(p.read_bytes() for p in (tmp_path / "data" / "_index").rglob("*") if p.is_file())
    memory = SpaceMemory(space, store)
    recalled = [h.text for q in ("password key token card email", "postgres connected")
                for h in memory.search(q, local_embedder.embed([q])[0], 20, None, None)]
    for secret in SECRETS:
        assert secret not in memory_text, f"{secret} leaked into memory objects"
        assert secret not in embedded_text, f"{secret} leaked into embedded template text"
        assert secret.encode() not in index_files, f"{secret} leaked into index files"
        assert all(secret not in text for text in recalled), f"{secret} leaked into recall"
    assert "[REDACTED:" in memory_text


def test_embedder_outage_pauses_indexing_which_resumes_by_itself(tmp_path, embedding_model):
    from harness.process import free_port
    from monologue.model_server.service import ModelServer, Settings, create_server

    space, store = make_space(tmp_path, normal_lines(40))
    port = free_port()
    embedder = GrpcEmbedder(f"127.0.0.1:{port}", timeout=5)
    indexer = Indexer(space, store, embedder)
    stop = threading.Event()
    worker = threading.Thread(target=indexer.run, args=(stop,), kwargs={"poll_seconds": 0.2, "max_backoff": 0.5})
    worker.start()
    try:
        assert store.count("shop") == 0  # nothing indexed while the model server is down
        model = ModelServer(Settings(model=str(embedding_model), role="embedding", context_size=512))
        model.load()
        server, _ = create_server(f"127.0.0.1:{port}", model)
        server.start()
        try:
            waiter = threading.Event()
            for _ in range(300):  # up to 30 s: indexer and channel backoffs are capped below that
                if store.count("shop") == 40:
                    break
                waiter.wait(0.1)
            assert store.count("shop") == 40
        finally:
            server.stop(0)
            model.stop()
    finally:
        stop.set()
        worker.join(10)
        embedder.close()
    assert not worker.is_alive()


def test_a_view_space_recalls_only_what_its_filter_keeps(tmp_path, local_embedder):
    lines = normal_lines(30) + ["2026-11-02T11:00:00Z ERROR worker 3 failed job 999: disk full"]
    space, store = make_space(tmp_path, lines)
    Indexer(space, store, local_embedder).run_once()
    errors = SpaceMemory(Space("errors", space.uri, where="level = 'error'", collection="shop"), store)
    q = "worker job"
    hits = errors.search(q, local_embedder.embed([q])[0], 10, None, None)
    assert [h.level for h in hits] == ["error"]
    assert errors.line_count() == 1


def test_a_crash_after_writing_memory_but_before_recording_it_does_not_duplicate(tmp_path, local_embedder):
    import json

    space, store = make_space(tmp_path, normal_lines(100))
    indexer = Indexer(space, store, local_embedder)
    indexer.run_once()
    state_file = tmp_path / "data" / "_index" / "state.json"
    state = json.loads(state_file.read_text())
    (key,) = state["objects"]
    # As if the process died right after the store write: not done, still in flight.
    state_file.write_text(json.dumps({"objects": {}, "inflight": key}))
    report = Indexer(space, store, local_embedder).run_once()
    assert report.objects == 1
    assert store.count("shop") == 100


class FiguresAtUpsert(LanceStore):
    """A real LanceStore that, when rows arrive, asks what a question at that
    moment would get from a long-lived agent's memory (which caches the
    figures and template vectors per index version)."""

    def __init__(self, path, space):
        super().__init__(path)
        self.memory = SpaceMemory(space, self)
        self.counted, self.without_vector = [], []

    def upsert(self, collection, rows, known_new=False):
        templates = list(dict.fromkeys(rows["template_id"].to_pylist()))
        self.counted.append(sum(stat.count for stat in self.memory.stats(templates, None, None)))
        self.without_vector.append(set(templates) - set(self.memory._index().vectors.ids))
        super().upsert(collection, rows, known_new)


def test_lines_are_counted_in_the_figures_before_the_store_can_return_them(tmp_path, local_embedder, monkeypatch):
    from monologue.agent import indexer as indexer_module

    space, _ = make_space(tmp_path, normal_lines(20) + [f"disk {i} is full" for i in range(20)])
    store = FiguresAtUpsert(str(tmp_path / "memory"), space)
    write_atomic = indexer_module.storage.write_atomic

    def question_meanwhile(fs, path, data):
        store.memory._index()  # an agent answering while the indexer writes its files
        write_atomic(fs, path, data)

    monkeypatch.setattr(indexer_module.storage, "write_atomic", question_meanwhile)
    Indexer(space, store, local_embedder).run_once()
    more = tmp_path / "more.log"
    more.write_text("\n".join(f"cache {i} evicted" for i in range(10)) + "\n")
    ingest(more, space.uri, show_progress=False)
    Indexer(space, store, local_embedder).run_once()
    assert store.counted == [40, 10]
    assert store.without_vector == [set(), set()]  # a recalled line's template has its vector


def test_labels_become_the_same_json_as_row_by_row():
    import json

    import pyarrow as pa
    from monologue.agent.indexer import _labels_json

    labels = pa.map_(pa.string(), pa.string())
    cases = [
        pa.chunked_array([pa.array([[("job", "a"), ("pod", "p1")]] * 3 + [[("job", "b")], []], labels),
                          pa.array([[("z", "1"), ("a", "2")]], labels)]),
        # values holding the separators of the fast path, which could make two sets look alike
        pa.chunked_array([pa.array([[("a", "1\x01b\x002")], [("a", "1"), ("b", "2")]], labels)]),
        pa.chunked_array([pa.array([None, [("a", "1")]], labels)]),
    ]
    for column in cases:
        expected = [json.dumps(dict(pairs or []), sort_keys=True) for pairs in column.to_pylist()]
        assert _labels_json(column) == expected
