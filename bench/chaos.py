"""Chaos benchmark: run N tasks while SIGKILLing random worker processes, then count what went wrong.

A worker pool (``opscore worker --processes P``) is the supervisor: it restarts
every process killed here, as systemd or Kubernetes would. Every ``--kill-every``
seconds one random pool process is SIGKILLed until all tasks are terminal.
Then, straight from PostgreSQL: tasks lost (missing or never finished),
duplicated (more than one status→completed event), stuck (still running or
pending once the run is over), and for each kill how long until every run the
victim held was running again elsewhere.

    uv run python -m bench.chaos --tasks 2000 --kill-every 3

Results go to ``docs/chaos.md`` (``--output``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx
import pika
import pika.exceptions
import psutil
from tests.e2e.stack import stack_env
from tests.support.fake_openai import FakeOpenAI
from tests.support.processes import OPSCORE, ManagedProcess, free_port

from bench import machine, services
from ops_core.db import migrate

MODEL = "openai:fake-model"


@dataclass
class Kill:
    at: datetime
    pid: int
    worker_id: str | None = None
    orphans: int = 0
    detected_after: float | None = None  # seconds until every orphan was requeued (stale heartbeat seen)
    recovered_after: float | None = None  # seconds until every orphan ran again (or finished)


@dataclass
class Outcome:
    tasks: int
    seconds: float
    statuses: dict[str, int]
    duplicated: int
    kills: list[Kill] = field(default_factory=list)
    settle_seconds: float = 0.0  # from the last kill until every task was terminal
    dead_letters: int = 0  # messages Dramatiq gave up on (its .XQ queue): each would strand a task

    @property
    def lost(self) -> int:
        return self.tasks - sum(self.statuses.values())

    @property
    def stuck(self) -> int:
        return self.statuses.get("running", 0) + self.statuses.get("pending", 0)


def _args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--kill-every", type=float, default=3.0, help="seconds between kills")
    parser.add_argument("--processes", type=int, default=4, help="worker processes in the pool")
    parser.add_argument("--concurrency", type=int, default=50, help="runs per worker process")
    parser.add_argument("--delay", type=float, default=1.0, help="seconds each fake model call takes")
    parser.add_argument("--lease", type=float, default=5.0, help="OPSCORE_LEASE_SECONDS")
    parser.add_argument("--timeout", type=float, default=900.0, help="give up after this many seconds")
    parser.add_argument("--output", type=Path, default=Path("docs/chaos.md"))
    return parser.parse_args(argv)


async def _statuses(conn: asyncpg.Connection) -> dict[str, int]:
    rows = await conn.fetch("SELECT status, count(*) AS n FROM tasks GROUP BY status")
    return {r["status"]: int(r["n"]) for r in rows}


async def _kill_one(pool: ManagedProcess, conn: asyncpg.Connection) -> Kill | None:
    # Only registered worker processes: the supervisor also has multiprocessing's resource tracker.
    children = [c.pid for c in psutil.Process(pool.pid).children() if c.is_running()]
    rows = await conn.fetch(
        "SELECT DISTINCT ON (pid) pid, id FROM workers WHERE pid = ANY($1::int[]) AND stopped_at IS NULL"
        " ORDER BY pid, started_at DESC",
        children,
    )
    if not rows:
        return None
    victim = random.choice(rows)
    os.kill(victim["pid"], signal.SIGKILL)
    return Kill(at=datetime.now(UTC), pid=victim["pid"], worker_id=victim["id"])


async def _recovery(conn: asyncpg.Connection, kill: Kill) -> None:
    """Orphans of the kill, and when the last of them was running again (or finished) elsewhere."""
    if kill.worker_id is None:
        return
    rows = await conn.fetch(
        """
        SELECT r.task_id, r.created_at AS requeued,
               (SELECT min(e.created_at) FROM task_events e
                 WHERE e.task_id = r.task_id AND e.seq > r.seq AND e.type = 'status'
                   AND e.payload->>'to' IN ('running', 'completed', 'failed', 'cancelled')) AS again
          FROM task_events r
         WHERE r.type = 'requeued' AND r.payload->>'message' LIKE $1
        """,
        f"worker {kill.worker_id} %",
    )
    kill.orphans = len(rows)
    if rows:
        kill.detected_after = (max(r["requeued"] for r in rows) - kill.at).total_seconds()
    agains = [r["again"] for r in rows if r["again"] is not None]
    if rows and len(agains) == len(rows):
        kill.recovered_after = (max(agains) - kill.at).total_seconds()


async def _run(args: argparse.Namespace, database_url: str, queue_name: str, log_dir: Path) -> Outcome:
    fake = FakeOpenAI().start(free_port())
    env = {
        **stack_env(database_url, services.AMQP_URL, queue_name, fake),
        "OPSCORE_WORKER_CONCURRENCY": str(args.concurrency),
        "OPSCORE_LEASE_SECONDS": str(args.lease),
        "OPSCORE_LOG_LEVEL": "WARNING",
    }
    env["OPSCORE_API_KEY"] = _admin_key(env)
    api = ManagedProcess("api", ["api", "--port", env["OPSCORE_API_URL"].rsplit(":", 1)[1]], env, log_dir)
    pool = ManagedProcess("pool", ["worker", "--processes", str(args.processes), "--threads", "4"], env, log_dir)
    conn = await asyncpg.connect(services.dsn(database_url))
    try:
        api.start()
        pool.start()
        async with httpx.AsyncClient(base_url=env["OPSCORE_API_URL"], timeout=10, headers=_auth(env)) as client:
            await _wait_ready(client, args.processes)
        started = time.monotonic()
        await _submit_all(env["OPSCORE_API_URL"], args, _auth(env))
        kills: list[Kill] = []
        next_kill = time.monotonic() + args.kill_every
        while True:
            statuses = await _statuses(conn)
            if statuses.get("pending", 0) + statuses.get("running", 0) == 0:
                break
            if time.monotonic() - started > args.timeout:
                break
            if time.monotonic() >= next_kill:
                kill = await _kill_one(pool, conn)
                if kill is not None:
                    kills.append(kill)
                next_kill = time.monotonic() + args.kill_every
            await asyncio.sleep(0.2)
        finished = time.monotonic()
        statuses = await _statuses(conn)
        duplicated = await conn.fetchval(
            """SELECT count(*) FROM (SELECT task_id FROM task_events WHERE type = 'status'
               AND payload->>'to' = 'completed' GROUP BY task_id HAVING count(*) > 1) d"""
        )
        for kill in kills:
            await _recovery(conn, kill)
        outcome_dead = await asyncio.to_thread(_depth, f"{queue_name}.XQ")
        last_kill = kills[-1].at if kills else None
        outcome = Outcome(args.tasks, finished - started, statuses, int(duplicated), kills, dead_letters=outcome_dead)
        if last_kill is not None:
            last_finish = await conn.fetchval("SELECT max(finished_at) FROM tasks")
            outcome.settle_seconds = max(0.0, (last_finish - last_kill).total_seconds())
        return outcome
    finally:
        # Processes first: an interrupted run must not leave them behind.
        for process in (pool, api):
            try:
                process.stop()
            except BaseException:
                process.kill()
        fake.stop()
        await conn.close()


def _depth(queue_name: str) -> int:
    connection = pika.BlockingConnection(pika.URLParameters(services.AMQP_URL))
    try:
        declared = connection.channel().queue_declare(queue=queue_name, passive=True)
        return int(declared.method.message_count or 0)
    except pika.exceptions.ChannelClosedByBroker:
        return 0  # never declared: nothing was dead-lettered
    finally:
        if connection.is_open:
            connection.close()


def _admin_key(env: dict[str, str]) -> str:
    """An admin key, made as an operator makes one (``opscore keys create``)."""
    args = [OPSCORE, "keys", "create", "--tenant", "chaos", "--scope", "admin"]
    made = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60, check=True)
    return made.stdout.strip().splitlines()[-1]


def _auth(env: dict[str, str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {env['OPSCORE_API_KEY']}"}


async def _submit_all(api_url: str, args: argparse.Namespace, headers: dict[str, str], concurrency: int = 8) -> None:
    """Submit every task like a careful client: an idempotency key, and a 503 retried after a pause."""
    pending = list(range(args.tasks))

    async def submitter(client: httpx.AsyncClient) -> None:
        while pending:
            i = pending.pop()
            body = {"goal": f"[[delay={args.delay:g}]] chaos {i}", "model": MODEL, "idempotency_key": f"chaos-{i}"}
            for _ in range(20):
                response = await client.post("/v1/tasks", json=body)
                if response.status_code in (200, 202):
                    break
                if response.status_code != 503:
                    raise RuntimeError(f"POST /v1/tasks: {response.status_code} {response.text[:200]}")
                await asyncio.sleep(0.5)
            else:
                raise RuntimeError(f"task {i} not accepted after 20 tries")

    async with httpx.AsyncClient(base_url=api_url, timeout=30, headers=headers) as client:
        await asyncio.gather(*(submitter(client) for _ in range(concurrency)))


async def _wait_ready(client: httpx.AsyncClient, workers: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            ready = (await client.get("/readyz")).status_code == 200
            if ready and len((await client.get("/v1/workers")).json()["items"]) >= workers:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.2)
    raise RuntimeError("the deployment did not become ready in 60 s")


def render(args: argparse.Namespace, outcome: Outcome, command: str) -> str:
    recovered = [k.recovered_after for k in outcome.kills if k.recovered_after is not None]
    with_orphans = [k for k in outcome.kills if k.orphans]
    lines = [
        "## Chaos",
        "",
        f"{outcome.tasks} tasks (each one fake model call of {args.delay:g} s) on a pool of {args.processes}"
        f" worker processes × {args.concurrency} runs, one random process SIGKILLed every {args.kill_every:g} s"
        f" and restarted by the pool; lease {args.lease:g} s, heartbeat 1 s.",
        "",
        f"Command: `{command}`",
        "",
        "| Figure | Value |",
        "|---|---|",
        f"| Tasks completed | {outcome.statuses.get('completed', 0)} |",
        f"| Tasks failed (out of retries) | {outcome.statuses.get('failed', 0)} |",
        f"| **Lost** (never stored or never finished) | **{outcome.lost + outcome.stuck}** |",
        f"| **Duplicated** (completed more than once) | **{outcome.duplicated}** |",
        f"| **Stuck** (running or pending at the end) | **{outcome.stuck}** |",
        f"| Dead-lettered messages | {outcome.dead_letters} |",
        f"| Wall time | {outcome.seconds:.1f} s |",
        f"| Processes killed | {len(outcome.kills)} ({len(with_orphans)} held runs when killed) |",
        f"| Runs orphaned by the kills | {sum(k.orphans for k in outcome.kills)} |",
    ]
    detected = [k.detected_after for k in outcome.kills if k.detected_after is not None]
    if detected:
        lines += [
            f"| Kill → every orphan requeued (median / max) | {statistics.median(detected):.1f} s"
            f" / {max(detected):.1f} s |",
        ]
    if recovered:
        lines += [
            f"| Kill → every orphan running again, behind the backlog (median / max) |"
            f" {statistics.median(recovered):.1f} s / {max(recovered):.1f} s |",
        ]
    lines += [
        f"| Last kill → every task terminal | {outcome.settle_seconds:.1f} s |",
        "",
        "Machine:",
        "",
        *(f"- {key}: {value}" for key, value in machine.describe().items()),
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    log_dir = Path(os.environ.get("BENCH_LOG_DIR", "/tmp")) / f"opscore-chaos-{os.getpid()}"
    log_dir.mkdir(parents=True, exist_ok=True)
    with services.scratch_database() as database_url, services.scratch_queue("chaos") as queue_name:
        migrate.upgrade(database_url)
        outcome = asyncio.run(_run(args, database_url, queue_name, log_dir))
    command = "uv run python -m bench.chaos " + " ".join(argv if argv is not None else sys.argv[1:])
    text = render(args, outcome, command.strip())
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("# Chaos benchmark\n\n" + text)
    print(text)
    return 0 if outcome.lost + outcome.stuck + outcome.duplicated + outcome.dead_letters == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
