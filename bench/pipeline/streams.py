"""The drain with event streams attached: the same backlog drained with the API up and no stream open,
then with ``subscribers`` SSE streams open on tasks of the backlog for the whole drain.

The streams are opened before the workers start and each follows its task to
its terminal event, so the API's stream poll runs throughout the drain; the
ratio of the two drain rates is the streams' cost to the workers.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import asyncpg
import httpx
from httpx_sse import aconnect_sse

from bench.load import burst
from bench.pipeline import deploy
from bench.progress import Drain, wait_drained


async def measure(n: int, processes: int, log_dir: Path, subscribers: int) -> Drain:
    with deploy.opscore(log_dir) as system:
        system.start_api()
        await system.ready()
        await burst(system.submit_url, [deploy.HELLO] * n, headers=system.headers)
        base = system.submit_url.rsplit("/v1/", 1)[0]
        ids = await _spread(system.dsn, subscribers)
        timeout = httpx.Timeout(60, read=None)
        async with httpx.AsyncClient(base_url=base, headers=system.headers, timeout=timeout) as http:
            opened = [asyncio.Event() for _ in ids]
            followers = [asyncio.create_task(_follow(http, i, o)) for i, o in zip(ids, opened, strict=True)]
            await _until_open(opened, followers)
            started = time.monotonic()
            workers = system.start_workers(processes)
            try:
                drain = await wait_drained(
                    system.dsn,
                    deploy.completed_sql(system),
                    n,
                    processes=processes,
                    started=started,
                    failed_sql=deploy.failed_sql(system),
                    alive=workers.alive,
                )
                ends = await asyncio.wait_for(asyncio.gather(*followers), timeout=60)
            except Exception as exc:
                raise RuntimeError(f"{exc}\n--- worker log ---\n{workers.log_tail(40)}") from exc
        if any(end != "completed" for end in ends):
            raise RuntimeError(f"a stream did not end with its task's completion: {ends}")
        return drain


async def _spread(dsn: str, count: int) -> list[str]:
    """``count`` task ids spread over the backlog, first to last."""
    if count == 0:
        return []
    conn = await asyncpg.connect(dsn)
    try:
        ids = [str(row["id"]) for row in await conn.fetch("SELECT id FROM tasks ORDER BY created_at, id")]
    finally:
        await conn.close()
    step = max(1, len(ids) // count)
    return ids[::step][:count]


async def _follow(http: httpx.AsyncClient, task_id: str, opened: asyncio.Event) -> str:
    """Read the task's stream to its end; the status its last event moved the task to."""
    last = ""
    async with aconnect_sse(http, "GET", f"/v1/tasks/{task_id}/stream") as source:
        if source.response.status_code != 200:
            raise RuntimeError(f"stream of {task_id}: {source.response.status_code}")
        async for sent in source.aiter_sse():
            opened.set()  # the first event (its creation) arrived: the stream is open and watched
            if sent.event == "status":
                last = str(sent.json()["payload"]["to"])
    return last


async def _until_open(opened: list[asyncio.Event], followers: list[asyncio.Task[str]]) -> None:
    """Until every stream has delivered its first event; a stream that fails to open fails the run now."""
    waiting = asyncio.gather(*(event.wait() for event in opened))
    done, _ = await asyncio.wait([waiting, *followers], timeout=60, return_when=asyncio.FIRST_COMPLETED)
    if waiting not in done:
        waiting.cancel()
        failed = [f.exception() for f in followers if f.done()]
        raise RuntimeError(f"{len(opened)} streams did not open: {failed[:1] or 'timed out'}")
