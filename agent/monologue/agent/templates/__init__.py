"""Log template mining: a template id and text for every log line (see `miner`)."""

from .miner import Match, TemplateMiner

__all__ = ["Match", "TemplateMiner"]
