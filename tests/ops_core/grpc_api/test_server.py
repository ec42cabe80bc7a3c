"""How the gRPC server is started: by the API's lifespan on OPSCORE_GRPC_PORT, and by ``--grpc-port``."""

from __future__ import annotations

import uuid
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from typer.testing import CliRunner

from ops_core.api.app import create_app
from ops_core.cli import build_cli
from ops_core.config import Settings
from ops_core.db import migrate
from ops_core.errors import ConfigError
from ops_core.grpc_api import taskservice_pb2 as pb
from ops_core.grpc_api import taskservice_pb2_grpc
from ops_core.grpc_api.server import backend_of, start_grpc
from ops_core.runtime import Runtime
from tests.support.processes import free_port


async def test_the_api_lifespan_serves_grpc_on_the_setting(settings: Settings) -> None:
    await migrate.upgrade_async(settings)
    port = free_port()
    app = create_app(settings.model_copy(update={"grpc_port": port, "host": "127.0.0.1", "auth": "disabled"}))

    async with app.router.lifespan_context(app), grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        submitted = await taskservice_pb2_grpc.TaskServiceStub(channel).Submit(pb.SubmitTaskRequest(goal="x"))
        # The REST app's own runtime served it.
        assert (await app.state.runtime.store.get(uuid.UUID(submitted.task.id), tenant="default")).goal == "x"

    assert health.status == health_pb2.HealthCheckResponse.SERVING
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as gone:
            await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert gone.value.code() in {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}


async def test_a_port_in_use_is_one_clear_error(settings: Settings, runtime: Runtime) -> None:
    app = create_app(settings, runtime=runtime)
    first = await start_grpc(backend_of(app), host="127.0.0.1", port=0)
    try:
        with pytest.raises(ConfigError, match=f"OPSCORE_GRPC_PORT: cannot listen on 127.0.0.1:{first.port}"):
            await start_grpc(backend_of(app), host="127.0.0.1", port=first.port)
    finally:
        await first.stop()


@pytest.mark.parametrize("command", ["api", "dev"])
def test_grpc_port_option_reaches_the_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, command: str) -> None:
    import ops_core.api.server
    import ops_core.dev

    served: list[Settings] = []
    monkeypatch.setattr(ops_core.api.server, "serve", lambda app, settings, **_: served.append(settings))
    monkeypatch.setattr(ops_core.dev, "run_dev", lambda settings, **_: served.append(settings))
    env = {"OPSCORE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"}

    given = CliRunner().invoke(build_cli(), [command, "--grpc-port", "50123"], env=env)
    from_env = CliRunner().invoke(build_cli(), [command], env={**env, "OPSCORE_GRPC_PORT": "50124"})
    bad = CliRunner().invoke(build_cli(), [command], env={**env, "OPSCORE_GRPC_PORT": "0"})

    assert given.exit_code == 0 and from_env.exit_code == 0, given.output + from_env.output
    assert [s.grpc_port for s in served] == [50123, 50124]
    assert bad.exit_code == 2 and "grpc_port" in bad.output.lower()
