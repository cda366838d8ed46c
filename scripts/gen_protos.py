"""Regenerate the Python protobuf/gRPC code and .pyi stubs from protos/.

Usage: python scripts/gen_protos.py [--out DIR]

Writes into alpcrun/proto/_gen/ (or DIR) and rewrites the generated imports so
the modules live inside the alpcrun package. tests/test_protos_fresh.py
runs this into a temporary folder and fails if the committed code differs.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
DEFAULT_OUT = ROOT / "alpcrun" / "proto" / "_gen"
PACKAGE = "alpcrun.proto._gen"
_IMPORT_RE = re.compile(r"^(from|import) alpcrun\.v1\b", re.MULTILINE)


def generate(out: Path) -> list[Path]:
    """Run protoc for every .proto under protos/ and write the flattened result to out."""
    import grpc_tools  # imported lazily: a dev-only dependency

    protos = sorted(PROTO_ROOT.rglob("*.proto"))
    include = Path(grpc_tools.__file__).parent / "_proto"
    bindir = Path(sys.executable).parent
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{PROTO_ROOT}",
            f"-I{include}",
            f"--python_out={tmp}",
            f"--grpc_python_out={tmp}",
            f"--plugin=protoc-gen-mypy={bindir / 'protoc-gen-mypy'}",
            f"--plugin=protoc-gen-mypy_grpc={bindir / 'protoc-gen-mypy_grpc'}",
            f"--mypy_out={tmp}",
            f"--mypy_grpc_out={tmp}",
            *[str(p.relative_to(PROTO_ROOT)) for p in protos],
        ]
        done = subprocess.run(cmd, cwd=PROTO_ROOT, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"protoc failed:\n{done.stderr}")
        generated = sorted(Path(tmp, "alpcrun", "v1").glob("*.py*"))
        if out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True)
        written = []
        for src in generated:
            text = _IMPORT_RE.sub(rf"\1 {PACKAGE}", src.read_text())
            dst = out / src.name
            dst.write_text(text)
            written.append(dst)
        (out / "__init__.py").write_text('"""Generated protobuf and gRPC code. Do not edit."""\n')
        return written


def main() -> None:
    """Entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    for path in generate(args.out):
        print(path.relative_to(args.out.parent) if args.out == DEFAULT_OUT else path)


if __name__ == "__main__":
    main()
