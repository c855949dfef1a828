"""TemplateMiner: every log line gets a template id and a template text.

    miner = TemplateMiner(space_dir / "templates.json")
    match = miner.add(line, stream="ns/pod/container")   # Match(template_id, template)
    matches = miner.add_many(lines, stream=...)
    miner.save()

Pipeline per line: strip the header (`header`; formats are learned per stream, so give each
source its own stream name), mask variables (`masking`), then find the template (`drain`).
A dictionary from masked message to template short-cuts the search: after masking, most
lines repeat a message seen before.

Template ids
------------
An id names a template for its whole life and never changes: it is derived once, when the
template is created, from the masked text of its first line (`T` + 12 hex digits of a
BLAKE2b hash), and stays the same when the template later generalises (`user alice logged
in from the console` -> `user <*> logged in from the console`). So lines already indexed under an id stay correct;
what an id stands for today is `template(id)`. Templates are never merged, so no id ever
needs a mapping to another. Two miners fed the same lines in the same order produce the
same ids, also in different processes.

Persistence
-----------
`save()` writes the state as JSON beside the data (the path the caller gives), atomically:
a temporary file in the same directory, fsync, rename. The state holds the templates, the
similarity threshold they were mined with, the header patterns of each stream and the
masked-message shortcut, so a restarted miner given
the same lines assigns the same ids, and new lines keep mining into the same templates.
The shortcut is bounded (`max_shortcuts`); past that bound, lines whose masked message was
never seen are matched by similarity, which almost always but not provably finds the
template they had before the restart.

Not thread-safe: one miner per indexer worker.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from .drain import SIMILARITY_THRESHOLD, Cluster, Drain
from .header import HeaderModel
from .masking import mask

STATE_VERSION = 1


@dataclass(frozen=True, slots=True)
class Match:
    template_id: str
    template: str


class TemplateMiner:
    """Mines templates from log lines; state persists at `state_path` (None: in memory)."""

    def __init__(
        self,
        state_path: Path | str | None = None,
        *,
        threshold: float = SIMILARITY_THRESHOLD,
        max_shortcuts: int = 200_000,
    ) -> None:
        self.state_path = Path(state_path) if state_path is not None else None
        self.max_shortcuts = max_shortcuts
        self._drain = Drain(threshold)
        self._clusters: dict[str, Cluster] = {}
        # Current Match per template id: lines of one template share one immutable object.
        self._matches: dict[str, Match] = {}
        self._shortcuts: dict[str, Cluster] = {}
        self._streams: dict[str, HeaderModel] = {}
        if self.state_path is not None and self.state_path.exists():
            self._load(self.state_path)

    # -- mining -----------------------------------------------------------------------

    def add(self, line: str, stream: str = "") -> Match:
        """The template of one line. `stream` names where it comes from (file, pod...):
        header formats are learned per stream."""
        header = self._streams.get(stream)
        if header is None:
            header = self._streams[stream] = HeaderModel()
        return self._add_message(mask(header.message(line)))

    def add_many(self, lines: Iterable[str], stream: str = "") -> list[Match]:
        header = self._streams.get(stream)
        if header is None:
            header = self._streams[stream] = HeaderModel()
        message, add = header.message, self._add_message
        return [add(mask(message(line))) for line in lines]

    def _add_message(self, masked: str) -> Match:
        cluster = self._shortcuts.get(masked)
        if cluster is not None:
            cluster.size += 1
            return self._matches[cluster.id]
        cluster, changed = self._drain.match(masked.split(), self._new_id)
        if changed:
            self._clusters[cluster.id] = cluster
            self._matches[cluster.id] = Match(cluster.id, cluster.template)
        if len(self._shortcuts) < self.max_shortcuts:
            self._shortcuts[masked] = cluster
        return self._matches[cluster.id]

    def _new_id(self, tokens: list[str]) -> str:
        digest = hashlib.blake2b(" ".join(tokens).encode(), digest_size=6).hexdigest()
        template_id, n = f"T{digest}", 1
        while template_id in self._clusters:  # hash collision: deterministic suffix
            n += 1
            template_id = f"T{digest}-{n}"
        return template_id

    # -- lookup ----------------------------------------------------------------------

    def template(self, template_id: str) -> str | None:
        """The current text of a template (it may have generalised since a line got it)."""
        cluster = self._clusters.get(template_id)
        return cluster.template if cluster is not None else None

    def templates(self) -> list[Match]:
        """All templates, oldest first."""
        return list(self._matches.values())

    def __len__(self) -> int:
        return len(self._clusters)

    # -- persistence -----------------------------------------------------------------

    def save(self) -> None:
        """Write the state atomically to `state_path`."""
        if self.state_path is None:
            raise ValueError("this miner has no state_path")
        state = {
            "version": STATE_VERSION,
            "threshold": self._drain.threshold,
            "templates": [
                {"id": c.id, "template": c.template, "size": c.size}
                for c in self._clusters.values()
            ],
            "streams": {name: h.patterns for name, h in self._streams.items()},
            "shortcuts": {m: c.id for m, c in self._shortcuts.items()},
        }
        directory = self.state_path.parent
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{self.state_path.name}.")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(state, f, ensure_ascii=False, separators=(",", ":"))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.state_path)
        except BaseException:
            os.unlink(tmp)
            raise
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # make the rename itself durable
        finally:
            os.close(dir_fd)

    def _load(self, path: Path) -> None:
        state = json.loads(path.read_text(encoding="utf-8"))
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"{path}: unsupported template state version {state.get('version')}")
        self._drain.threshold = state["threshold"]
        for item in state["templates"]:
            cluster = Cluster(item["id"], item["template"].split(), item["size"])
            self._clusters[cluster.id] = cluster
            self._matches[cluster.id] = Match(cluster.id, cluster.template)
            self._drain.insert(cluster)
        for name, patterns in state["streams"].items():
            self._streams[name] = HeaderModel(patterns)
        self._shortcuts = {m: self._clusters[i] for m, i in state["shortcuts"].items()}
