"""The committed gRPC stubs are what proto/ generates today."""

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_generated_stubs_are_current(tmp_path):
    subprocess.run([str(ROOT / "scripts" / "gen-proto"), str(tmp_path)], check=True)
    committed = ROOT / "proto" / "python"
    generated = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.py*"))
    assert generated, "protoc generated nothing"
    for rel in generated:
        assert (committed / rel).read_text() == (tmp_path / rel).read_text(), (
            f"{rel} is stale: run `make proto` and commit the result"
        )
