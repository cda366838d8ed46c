import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_committed_generated_code_matches_the_protos(tmp_path):
    """Regenerating from protos/ reproduces the committed alpcrun/proto/_gen byte for byte."""
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import gen_protos
    finally:
        sys.path.pop(0)
    gen_protos.generate(tmp_path)
    committed = ROOT / "alpcrun" / "proto" / "_gen"
    fresh = {p.name: p.read_text() for p in tmp_path.iterdir()}
    current = {p.name: p.read_text() for p in committed.iterdir() if p.is_file()}
    assert sorted(fresh) == sorted(current), "files differ: run `make protos`"
    stale = [name for name in fresh if fresh[name] != current[name]]
    assert not stale, f"stale generated code {stale}: run `make protos`"
