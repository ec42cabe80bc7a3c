"""The committed gRPC code is what the .proto gives with the locked grpcio-tools: regenerated here and compared."""

from __future__ import annotations

from pathlib import Path

from grpc_tools import protoc

import ops_core

SOURCE = Path(ops_core.__file__).parent.parent  # ops-core/src
PROTO = "ops_core/grpc_api/taskservice.proto"
GENERATED = ("taskservice_pb2.py", "taskservice_pb2.pyi", "taskservice_pb2_grpc.py")
REGENERATE = (
    "uv run python -m grpc_tools.protoc -I ops-core/src --python_out=ops-core/src --pyi_out=ops-core/src"
    f" --grpc_python_out=ops-core/src ops-core/src/{PROTO}"
)


def test_the_generated_code_is_current(tmp_path: Path) -> None:
    include = Path(protoc.__file__).parent / "_proto"  # google/protobuf/*.proto, shipped with grpcio-tools
    status = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{SOURCE}",
            f"-I{include}",
            f"--python_out={tmp_path}",
            f"--pyi_out={tmp_path}",
            f"--grpc_python_out={tmp_path}",
            str(SOURCE / PROTO),
        ]
    )
    assert status == 0

    for name in GENERATED:
        fresh = (tmp_path / "ops_core" / "grpc_api" / name).read_text()
        committed = (SOURCE / "ops_core" / "grpc_api" / name).read_text()
        assert committed == fresh, f"{name} is stale: regenerate it with\n  {REGENERATE}"
