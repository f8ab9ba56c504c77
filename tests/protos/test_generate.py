"""The committed generated modules match `stackrl.proto` (regenerate with `python -m stackrl.protos.generate`)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("grpc_tools", reason="grpcio-tools (the `test` extra) generates the modules")

from stackrl.protos import generate  # noqa: E402


def test_generated_modules_are_up_to_date(tmp_path: Path):
    fresh = generate.generate(tmp_path)
    assert [p.name for p in fresh] == list(generate.GENERATED)
    for path in fresh:
        committed = generate.PROTO_DIR / path.name
        assert committed.exists(), f"{committed} is missing: run `python -m stackrl.protos.generate`"
        assert committed.read_text() == path.read_text(), (
            f"{committed.name} is stale (or made by another grpcio-tools version): "
            "run `python -m stackrl.protos.generate` and commit the result"
        )


def test_grpc_module_imports_messages_through_the_package():
    text = (generate.PROTO_DIR / "stackrl_pb2_grpc.py").read_text()
    assert "from stackrl.protos import stackrl_pb2 as" in text
    assert "\nimport stackrl_pb2" not in text


def test_only_the_codec_and_the_stub_users_import_generated_code():
    root = generate.PROTO_DIR.parent
    allowed = {
        "stackrl_pb2": {"protos/codec.py"},
        "stackrl_pb2_grpc": {"protos/rpc.py"},
    }
    for path in root.rglob("*.py"):
        rel = path.relative_to(root).as_posix()
        if rel.startswith(("protos/stackrl_pb2", "tests/")) or "/." in f"/{rel}":
            continue
        text = path.read_text()
        for module, users in allowed.items():
            if f"import {module}\n" in text or f"import {module} as" in text:
                assert rel in users, (
                    f"{rel} imports {module}; go through stackrl.protos.codec or stackrl.protos.rpc"
                )
