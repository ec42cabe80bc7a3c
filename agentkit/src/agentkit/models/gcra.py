"""The arithmetic of rate limits, without I/O: any limiter that keeps :class:`Bucket` states uses it.

Each limit is two GCRA buckets. A bucket is one timestamp, its theoretical
arrival time (TAT): the time by which everything taken so far would have been
paid off at the limit's rate. With ``T`` seconds per unit and room for
``capacity`` units at once, ``n`` units may be taken at ``now`` when
``max(tat, now) + n*T - now <= capacity*T``; taking them moves the TAT to
``max(tat, now) + n*T``. A request that does not conform takes nothing and
learns how long until it would. Times are seconds on one clock (the limiter's).

* Requests: ``T = 60/rpm``, capacity ``burst`` (default one second's worth, at least 1).
* Tokens: ``T = 60/tpm``, capacity one minute's worth. A request asking for more than
  the capacity is charged the capacity up front (else it could never go), and its
  settled usage makes up the rest as a debt later requests wait out.
* ``blocked_until``: after a provider's 429 nothing goes before it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, replace

__all__ = ["Bucket", "RateLimit", "extra_tokens", "grant", "limits_for", "penalised", "settled", "taken", "wait_for"]


@dataclass(frozen=True, slots=True)
class RateLimit:
    """Requests and/or tokens per minute; ``burst`` is how many requests may go at once."""

    rpm: float | None = None
    tpm: float | None = None
    burst: int | None = None

    def __post_init__(self) -> None:
        if self.rpm is None and self.tpm is None:
            raise ValueError("sets neither rpm nor tpm")
        for name, value in (("rpm", self.rpm), ("tpm", self.tpm)):
            if value is not None and not (value > 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a positive number, not {value:g}")
        if self.burst is not None:
            if self.rpm is None:
                raise ValueError("burst needs rpm (it is the number of requests that may go at once)")
            if self.burst < 1:
                raise ValueError(f"burst must be at least 1, not {self.burst}")

    @property
    def request_capacity(self) -> int:
        if self.burst is not None:
            return self.burst
        assert self.rpm is not None
        return max(1, math.ceil(self.rpm / 60))

    @property
    def token_capacity(self) -> float:
        assert self.tpm is not None
        return self.tpm


@dataclass(frozen=True, slots=True)
class Bucket:
    """The state of one limit: the TATs of its request and token buckets, and the end of a 429's block."""

    request_tat: float = 0.0
    token_tat: float = 0.0
    blocked_until: float = 0.0


def limits_for(limits: Mapping[str, RateLimit], model: str) -> dict[str, RateLimit]:
    """The limits a ``provider:name`` model draws from: its own, then its provider's, if set.

    A 429 holds the first of them only: the model's own limit when it has one, so that
    a model the provider throttles does not hold up its other models.
    """
    provider = model.partition(":")[0]
    return {key: limits[key] for key in (model, provider) if key in limits}


def _wait(tat: float, now: float, units: float, interval: float, capacity: float) -> float:
    return max(0.0, max(tat, now) + units * interval - capacity * interval - now)


def wait_for(bucket: Bucket, limit: RateLimit, now: float, tokens: int) -> float:
    """Seconds until one request of ``tokens`` conforms to ``limit`` (0.0: it does now)."""
    wait = max(0.0, bucket.blocked_until - now)
    if limit.rpm is not None:
        wait = max(wait, _wait(bucket.request_tat, now, 1, 60 / limit.rpm, limit.request_capacity))
    if limit.tpm is not None:
        units = min(max(tokens, 0), limit.token_capacity)
        wait = max(wait, _wait(bucket.token_tat, now, units, 60 / limit.tpm, limit.token_capacity))
    return wait


def taken(bucket: Bucket, limit: RateLimit, now: float, tokens: int) -> Bucket:
    """``bucket`` after one request of ``tokens`` went (whether or not it conformed: check first)."""
    request_tat, token_tat = bucket.request_tat, bucket.token_tat
    if limit.rpm is not None:
        request_tat = max(request_tat, now) + 60 / limit.rpm
    if limit.tpm is not None:
        token_tat = max(token_tat, now) + min(max(tokens, 0), limit.token_capacity) * 60 / limit.tpm
    return replace(bucket, request_tat=request_tat, token_tat=token_tat)


def grant(buckets: MutableMapping[str, Bucket], limits: Mapping[str, RateLimit], now: float, tokens: int) -> float:
    """One request against every limit in ``limits``: all take it (0.0) or none does (the longest wait)."""
    wait = max((wait_for(buckets.get(key, Bucket()), limit, now, tokens) for key, limit in limits.items()), default=0.0)
    if wait > 0:
        return wait
    for key, limit in limits.items():
        buckets[key] = taken(buckets.get(key, Bucket()), limit, now, tokens)
    return 0.0


def extra_tokens(limit: RateLimit, estimated: int, used: int) -> float:
    """What a request granted for ``estimated`` tokens still owes (negative: is owed) once it used ``used``."""
    if limit.tpm is None:
        return 0.0
    return used - min(max(estimated, 0), limit.token_capacity)


def settled(bucket: Bucket, limit: RateLimit, extra: float) -> Bucket:
    """``bucket`` charged ``extra`` tokens (given back, when negative): see :func:`extra_tokens`."""
    if limit.tpm is None or extra == 0:
        return bucket
    return replace(bucket, token_tat=bucket.token_tat + extra * 60 / limit.tpm)


def penalised(bucket: Bucket, now: float, seconds: float) -> Bucket:
    """``bucket`` after the provider said to wait ``seconds``: nothing goes before then."""
    return replace(bucket, blocked_until=max(bucket.blocked_until, now + max(seconds, 0.0)))
