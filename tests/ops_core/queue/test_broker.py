"""The broker keeps only the middleware ops-core relies on, so Dramatiq's defaults never apply silently."""

from __future__ import annotations

from dramatiq.middleware import AgeLimit, Retries, TimeLimit

from ops_core.config import Settings
from ops_core.errors import DatabaseUnavailable
from ops_core.queue.actors import DispatchRefused, _retry_dispatch, declare_run_task
from ops_core.queue.broker import setup_broker


async def _dispatch(task_id: str) -> None:
    return None


def test_no_time_limit_or_age_limit_and_only_explicit_retries() -> None:
    broker = setup_broker(Settings(broker_url="memory://", queue_name="q"))
    kinds = {type(m) for m in broker.middleware}
    # A run of hours must never be killed by Dramatiq's 10-minute default time limit.
    assert TimeLimit not in kinds and AgeLimit not in kinds
    [retries] = [m for m in broker.middleware if isinstance(m, Retries)]
    actor = declare_run_task(broker, "q", _dispatch)
    # The dispatch retries are only for infrastructure faults; Dramatiq's default predicate is replaced.
    assert actor.options["retry_when"] is _retry_dispatch
    assert retries.retry_when is None  # per-actor option wins; nothing global retries silently


def test_dispatch_is_retried_only_for_infrastructure_errors() -> None:
    assert _retry_dispatch(0, DatabaseUnavailable("down"))
    assert _retry_dispatch(5, DispatchRefused("shutting down"))
    assert not _retry_dispatch(0, ValueError("a bug"))
    assert not _retry_dispatch(0, RuntimeError("a bug"))


def test_the_worker_loop_thread_runs_uvloop() -> None:
    import dramatiq
    import uvloop
    from dramatiq.asyncio import get_event_loop_thread

    broker = setup_broker(Settings(broker_url="memory://", queue_name="q"))
    worker = dramatiq.Worker(broker, worker_threads=1)
    worker.start()
    try:
        thread = get_event_loop_thread()
        assert thread is not None and isinstance(thread.loop, uvloop.Loop)
        assert thread.daemon  # an interrupted shutdown must not leave the process hanging on it
        assert thread.run_coroutine(_answer()) == 42
    finally:
        worker.stop()
    assert get_event_loop_thread() is None


async def _answer() -> int:
    return 42
