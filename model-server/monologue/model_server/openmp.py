"""OpenMP settings for llama.cpp, applied before its runtime (libgomp) is loaded.

llama.cpp runs each decode as an OpenMP parallel region. Between two regions
libgomp's worker threads spin, by default for 300,000 rounds (milliseconds),
before they sleep. In this server the gap between two tokens is where the RPC
threads work (receive a request, send a token), and on a machine with as many
cores as llama.cpp threads a spinning worker holds the core they need: time to
first token grew by ~3 ms and tokens/s fell by a quarter. 5,000 rounds still
cover the waits inside one decode (between two operations), so the decode itself
is as fast as before, and the workers sleep in the gaps between tokens.
"""

from __future__ import annotations

import os

SPIN_COUNT = "5000"


def configure() -> None:
    """Sets GOMP_SPINCOUNT unless it is set; call before llama_cpp is imported."""
    os.environ.setdefault("GOMP_SPINCOUNT", SPIN_COUNT)
