"""Generate the Python stubs of the contract from proto/ (the only way they are made).

Usage: python scripts/generate_stubs.py [OUT_DIR]   (default: core/src)

Writes nightshift/v1/*_pb2.py, *_pb2_grpc.py and their typed stubs (mypy-protobuf).
tests/test_contract.py regenerates into a temporary directory and fails if the committed stubs differ.
"""

from __future__ import annotations

import sys
from pathlib import Path

from grpc_tools import protoc

REPO = Path(__file__).resolve().parent.parent
PROTO_ROOT = REPO / "proto"
DEFAULT_OUT = REPO / "core" / "src"


def proto_files() -> list[Path]:
    """The contract's .proto files, sorted."""
    return sorted(PROTO_ROOT.glob("nightshift/**/*.proto"))


def generate(out_dir: Path) -> list[Path]:
    """Run protoc on every contract file into ``out_dir``; return the generated files."""
    out_dir.mkdir(parents=True, exist_ok=True)
    well_known = Path(protoc.__file__).parent / "_proto"
    files = [str(p.relative_to(PROTO_ROOT)) for p in proto_files()]
    bin_dir = Path(sys.executable).parent  # mypy-protobuf's plugins live beside the interpreter
    args = [
        "protoc",
        f"--plugin=protoc-gen-mypy={bin_dir / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={bin_dir / 'protoc-gen-mypy_grpc'}",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--mypy_out={out_dir}",
        f"--mypy_grpc_out={out_dir}",
        *files,
    ]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed on {files}")
    return sorted((out_dir / "nightshift").rglob("*_pb2*.py*"))


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUT
    for path in generate(out):
        print(path.relative_to(out))
