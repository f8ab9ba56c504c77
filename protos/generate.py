"""Regenerate the committed Python modules from `stackrl.proto` with one command.

    python -m stackrl.protos.generate

The proto is compiled under the virtual path `stackrl/protos/`, so the generated gRPC module imports
its messages as `from stackrl.protos import stackrl_pb2` and works from an installed package. The
generated files are committed (as SEED RL commits `service_pb2.py`); `tests/protos/test_generate.py`
regenerates them into a temporary directory and fails if the committed copies are stale. The output
depends on the grpcio-tools version (pinned in the `test` extra).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from importlib.resources import files
from pathlib import Path

PROTO_DIR = Path(__file__).resolve().parent
PROTO_NAME = "stackrl.proto"
GENERATED = ("stackrl_pb2.py", "stackrl_pb2_grpc.py", "stackrl_pb2.pyi")


def generate(out_dir: Path) -> list[Path]:
    """Compile `stackrl.proto` into `out_dir`; returns the paths of the generated modules.

    Raises:
        RuntimeError: protoc reported an error (its message went to stderr).
    """
    from grpc_tools import protoc  # the generator is a test/dev dependency, not a runtime one

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    include = str(files("grpc_tools") / "_proto")
    with tempfile.TemporaryDirectory() as tmp:
        args = [
            "grpc_tools.protoc",
            f"-Istackrl/protos={PROTO_DIR}",
            f"-I{include}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"--grpc_python_out={tmp}",
            f"stackrl/protos/{PROTO_NAME}",
        ]
        if protoc.main(args) != 0:
            raise RuntimeError(f"protoc failed on {PROTO_DIR / PROTO_NAME}")
        made = Path(tmp) / "stackrl" / "protos"
        return [Path(shutil.copy(made / name, out_dir / name)) for name in GENERATED]


def main() -> int:
    for path in generate(PROTO_DIR):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
