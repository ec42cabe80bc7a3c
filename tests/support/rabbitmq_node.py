"""A private, throwaway RabbitMQ node for tests that need broker settings the shared one must keep.

The shared broker is never reconfigured; a test that needs, say, a 5-second
``consumer_timeout`` starts its own node on free ports, with its own node
name, data, logs and Erlang cookie (HOME) in a temporary directory, and
removes all of it afterwards.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pika
import pika.exceptions

from tests.support.processes import free_port

SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
CTL = Path("/usr/lib/rabbitmq/bin/rabbitmqctl")
START_TIMEOUT = 90.0


@dataclass(frozen=True)
class PrivateNode:
    amqp_url: str
    node_name: str
    env: dict[str, str]

    def log_text(self) -> str:
        """Everything the node has logged so far."""
        logs = Path(self.env["RABBITMQ_LOG_BASE"]).glob("*.log")
        return "".join(path.read_text(errors="replace") for path in sorted(logs))

    def ctl(self, *args: str) -> str:
        """``rabbitmqctl`` against this node only."""
        done = subprocess.run(
            [str(CTL), "-n", self.node_name, *args], env=self.env, capture_output=True, text=True, timeout=60
        )
        if done.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed: {done.stderr or done.stdout}")
        return done.stdout


def available() -> bool:
    return SERVER.exists() and CTL.exists() and shutil.which("erl") is not None


@contextmanager
def private_rabbitmq(base: Path, *, advanced: str, tries: int = 3) -> Iterator[PrivateNode]:
    """Start a node configured by ``advanced`` (an Erlang-term advanced.config); stop and delete it on exit.

    A port picked as free can be taken before the node binds it (busy machines open many outgoing
    connections), so a start that fails is tried again on other ports.
    """
    for attempt in range(tries):
        try:
            server, node = _start(base / f"try-{attempt}", advanced)
        except RuntimeError:
            if attempt == tries - 1:
                raise
            continue
        try:
            yield node
        finally:
            _stop(server)
            shutil.rmtree(base, ignore_errors=True)
        return


def _start(base: Path, advanced: str) -> tuple[subprocess.Popen[bytes], PrivateNode]:
    base.mkdir(parents=True, exist_ok=True)
    port, dist_port = free_port(), free_port()
    node_name = f"opscore-test-{uuid.uuid4().hex[:8]}@localhost"
    (base / "rabbitmq.conf").write_text(f"listeners.tcp.default = 127.0.0.1:{port}\nloopback_users = none\n")
    (base / "advanced.config").write_text(advanced)
    (base / "enabled_plugins").write_text("[].")
    env = {
        **os.environ,
        "HOME": str(base),  # the node's Erlang cookie lives here, not in the real home
        "RABBITMQ_NODENAME": node_name,
        "RABBITMQ_NODE_PORT": str(port),
        "RABBITMQ_DIST_PORT": str(dist_port),
        "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
        "RABBITMQ_LOG_BASE": str(base / "log"),
        "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq"),
        "RABBITMQ_ADVANCED_CONFIG_FILE": str(base / "advanced.config"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
        "RABBITMQ_PID_FILE": str(base / "node.pid"),
    }
    log = (base / "server.out").open("ab")
    server = subprocess.Popen([str(SERVER)], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    url = f"amqp://guest:guest@127.0.0.1:{port}/%2F"
    try:
        _wait_connectable(url, server, base)
    except BaseException:
        _stop(server)
        raise
    return server, PrivateNode(url, node_name, env)


def _wait_connectable(url: str, server: subprocess.Popen[bytes], base: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if server.poll() is not None:
            raise RuntimeError(f"private RabbitMQ exited: {(base / 'server.out').read_text(errors='replace')[-2000:]}")
        try:
            pika.BlockingConnection(pika.URLParameters(url)).close()
            return
        except pika.exceptions.AMQPError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"private RabbitMQ did not accept connections within {START_TIMEOUT}s") from None
            time.sleep(0.2)


def _stop(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is not None:
        return
    os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=10)
