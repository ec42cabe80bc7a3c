"""The body of ``GET /v1/stats``: what a tenant's recent tasks did, for the dashboard's overview."""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel, Field

from ops_core.db.models import TaskStats
from ops_core.lifecycle import TaskStatus

FINISHED = (TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED)


class QueueLagPublic(BaseModel):
    started: int = Field(description="Tasks of the window that have started.")
    avg_seconds: float | None = Field(description="Mean wait from submission to first start; null if none started.")
    max_seconds: float | None


class BucketPublic(BaseModel):
    start: datetime
    completed: int
    failed: int
    cancelled: int


class StatsPublic(BaseModel):
    since: datetime
    until: datetime
    bucket_seconds: int
    submitted: int = Field(description="Tasks submitted in the window; everything below is about them.")
    by_status: dict[TaskStatus, int] = Field(description="Where those tasks stand now.")
    throughput_per_minute: float = Field(description="Tasks finished (any final status) per minute of the window.")
    failure_rate: float | None = Field(description="failed / (completed + failed); null if none finished.")
    queue_lag: QueueLagPublic
    buckets: list[BucketPublic] = Field(description="Finished tasks by finish time, oldest bucket first.")

    @classmethod
    def build(cls, stats: TaskStats, *, since: datetime, until: datetime, bucket_seconds: int) -> StatsPublic:
        by_status = {row.status: row.tasks for row in stats.by_status}
        started = sum(row.started for row in stats.by_status)
        lag_sum = sum(row.lag_sum for row in stats.by_status)
        lag_max = max((row.lag_max for row in stats.by_status if row.started), default=None)
        completed, failed = by_status.get(TaskStatus.COMPLETED, 0), by_status.get(TaskStatus.FAILED, 0)
        finished = sum(by_status.get(status, 0) for status in FINISHED)
        minutes = max((until - since).total_seconds(), 1.0) / 60
        width = timedelta(seconds=bucket_seconds)
        count = max(0, -(-(until - since) // width))  # ceiling: the last bucket may be partial
        buckets = [BucketPublic(start=since + k * width, completed=0, failed=0, cancelled=0) for k in range(count)]
        for row in stats.finished:
            if buckets and row.bucket >= 0:
                # A task that finished between ``until`` and the query counts in the last bucket.
                bucket = buckets[min(row.bucket, len(buckets) - 1)]
                setattr(bucket, row.status.value, getattr(bucket, row.status.value) + row.tasks)
        return cls(
            since=since,
            until=until,
            bucket_seconds=bucket_seconds,
            submitted=sum(by_status.values()),
            by_status=by_status,
            throughput_per_minute=finished / minutes,
            failure_rate=failed / (completed + failed) if completed + failed else None,
            queue_lag=QueueLagPublic(
                started=started, avg_seconds=lag_sum / started if started else None, max_seconds=lag_max
            ),
            buckets=buckets,
        )
