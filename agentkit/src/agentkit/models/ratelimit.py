"""Provider rate limits: what a limit is, the limiter interface models consult, and an in-process limiter.

A limit applies to a provider (``openai``) or to one model (``openai:gpt-4o-mini``):
requests per minute (``rpm``) and tokens per minute (``tpm``). A request for a model
draws from every limit that names it, its model's and its provider's.

Both are a GCRA (a token bucket kept as one timestamp per bucket, the "theoretical
arrival time"): requests are spaced ``60/rpm`` seconds apart, with up to ``burst`` at
once (default: one second's worth, at least 1); tokens refill at ``tpm/60`` per second
into a bucket that holds one minute's worth. A request's tokens are estimated before it
is sent (:func:`estimate_tokens`) and corrected with its real usage after it
(:meth:`RateLimiter.settle`); a correction larger than the bucket leaves a debt that
later requests wait out. A provider's 429 holds the model's limit (its provider's
if it has none of its own) for its ``Retry-After`` (:meth:`RateLimiter.penalise`).

A model built with ``rate_limiter=`` asks the limiter before every attempt, its own
retries included; while it waits it tells the run (see :func:`report_waits`), which
records a ``rate_limit_wait`` event. :class:`InMemoryRateLimiter` serves one process;
a host with many processes provides a shared one (ops-core keeps the state in
PostgreSQL). The arithmetic is in :mod:`agentkit.models.gcra`.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from agentkit.models.base import ModelRequest
from agentkit.models.gcra import Bucket, RateLimit, extra_tokens, grant, limits_for, penalised, settled

__all__ = [
    "DEFAULT_OUTPUT_TOKENS",
    "InMemoryRateLimiter",
    "RateLimit",
    "RateLimitWait",
    "RateLimiter",
    "estimate_tokens",
    "notify_wait",
    "parse_rate_limits",
    "report_waits",
]

DEFAULT_OUTPUT_TOKENS = 512
"""The output a request is assumed to produce when its settings set no ``max_tokens``, until its usage is known."""

_CHARS_PER_TOKEN = 4


@runtime_checkable
class RateLimiter(Protocol):
    """What a model asks before each attempt of a request, and tells after it.

    ``model`` is the model's ``provider:name`` string. A model asks :meth:`covers`
    first and nothing else when it answers ``False``, so an unlimited model pays nothing.
    """

    def covers(self, model: str) -> bool:
        """Whether any limit applies to ``model``."""
        ...

    async def acquire(self, model: str, tokens: int) -> float:
        """Take one request and ``tokens`` from ``model``'s budget and return 0.0 if they are there now;
        otherwise take nothing and return the seconds until they may be (the caller sleeps, then asks again)."""
        ...

    async def settle(self, model: str, estimated: int, used: int) -> None:
        """A granted request used ``used`` tokens, not the ``estimated`` it took: give back or charge the difference."""
        ...

    async def penalise(self, model: str, seconds: float) -> None:
        """The provider answered 429: hold every request for ``model`` for ``seconds``
        (through its most specific limit: its own if it has one, else its provider's)."""
        ...


def parse_rate_limits(text: str) -> dict[str, RateLimit]:
    """Limits from a setting: JSON, or the compact form ``KEY rpm=N tpm=N burst=N; KEY ...``.

    ``KEY`` is a provider (``openai``) or a ``provider:model`` string. JSON is an
    object of the same keys, each with an object of ``rpm``, ``tpm`` and ``burst``.
    Raises ``ValueError`` saying what is wrong.
    """
    text = text.strip()
    if not text:
        raise ValueError("names no limit; leave it unset for none")
    entries: dict[str, dict[str, object]] = {}
    if text.startswith("{"):
        try:
            loaded = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"is not valid JSON: {exc}") from None
        for key, spec in loaded.items():
            if not isinstance(spec, dict):
                raise ValueError(f"{key!r}: expected an object like {{'rpm': 60}}, got {spec!r}")
            entries[key] = spec
    else:
        for entry in filter(None, (part.strip() for part in text.split(";"))):
            key, *items = entry.split()
            spec = {}
            for item in items:
                name, sep, value = item.partition("=")
                if not sep:
                    raise ValueError(f"{key!r}: {item!r} is not NAME=VALUE (rpm=60, tpm=90000, burst=5)")
                spec[name] = value
            entries[key] = spec
    limits: dict[str, RateLimit] = {}
    for key, spec in entries.items():
        canonical = _canonical_key(key)
        if canonical in limits:
            raise ValueError(f"{key!r} is given twice")
        limits[canonical] = _limit(key, spec)
    return limits


def _canonical_key(key: str) -> str:
    from agentkit.errors import UnknownProviderError
    from agentkit.models import KNOWN_PROVIDERS, PROVIDER_ALIASES, parse_model_string

    try:
        if ":" in key:
            provider, name = parse_model_string(key)
            return f"{provider}:{name}"
        provider = PROVIDER_ALIASES.get(key.strip().lower(), key.strip().lower())
    except UnknownProviderError as exc:
        raise ValueError(str(exc)) from None
    if provider not in KNOWN_PROVIDERS:
        raise ValueError(f"{key!r} is neither a known provider ({', '.join(KNOWN_PROVIDERS)}) nor provider:model")
    return provider


def _limit(key: str, spec: Mapping[str, object]) -> RateLimit:
    unknown = set(spec) - {"rpm", "tpm", "burst"}
    if unknown:
        raise ValueError(f"{key!r}: unknown {', '.join(sorted(unknown))}; expected rpm, tpm, burst")
    values: dict[str, float | None] = {}
    for name in ("rpm", "tpm", "burst"):
        raw = spec.get(name)
        try:
            values[name] = None if raw is None else float(str(raw))
        except ValueError:
            raise ValueError(f"{key!r}: {name}={raw!r} is not a number") from None
    burst = values["burst"]
    if burst is not None and burst != int(burst):
        raise ValueError(f"{key!r}: burst={burst:g} is not a whole number")
    try:
        return RateLimit(rpm=values["rpm"], tpm=values["tpm"], burst=None if burst is None else int(burst))
    except ValueError as exc:
        raise ValueError(f"{key!r}: {exc}") from None


def estimate_tokens(request: ModelRequest) -> int:
    """A request's tokens before it is sent: a quarter of its characters, plus its output bound.

    Counted from the texts, arguments and tool schemas, not from the JSON the provider
    gets: cheaper, and the estimate is corrected with the real usage anyway.
    """
    chars = 0
    for message in request.messages:
        chars += len(message.content or "")
        for call in getattr(message, "tool_calls", ()):
            chars += len(call.name) + len(json.dumps(call.arguments))
    for tool in request.tools:
        chars += len(tool.name) + len(tool.description) + len(json.dumps(tool.parameters))
    output = request.settings.max_tokens
    return math.ceil(chars / _CHARS_PER_TOKEN) + (output if output is not None else DEFAULT_OUTPUT_TOKENS)


class InMemoryRateLimiter:
    """A :class:`RateLimiter` for one process: its budget is not shared with any other.

    ``clock`` (seconds, monotonic) is injectable so tests control time.
    """

    def __init__(self, limits: Mapping[str, RateLimit], *, clock: Callable[[], float] = time.monotonic) -> None:
        self._limits = dict(limits)
        self._clock = clock
        self._buckets: dict[str, Bucket] = {}
        self._keys: dict[str, dict[str, RateLimit]] = {}

    def _of(self, model: str) -> dict[str, RateLimit]:
        found = self._keys.get(model)
        if found is None:
            found = self._keys[model] = limits_for(self._limits, model)
        return found

    def covers(self, model: str) -> bool:
        return bool(self._of(model))

    async def acquire(self, model: str, tokens: int) -> float:
        return grant(self._buckets, self._of(model), self._clock(), tokens)

    async def settle(self, model: str, estimated: int, used: int) -> None:
        for key, limit in self._of(model).items():
            self._buckets[key] = settled(self._buckets.get(key, Bucket()), limit, extra_tokens(limit, estimated, used))

    async def penalise(self, model: str, seconds: float) -> None:
        held = next(iter(self._of(model)), None)  # the most specific limit (see limits_for)
        if held is not None:
            self._buckets[held] = penalised(self._buckets.get(held, Bucket()), self._clock(), seconds)


# --------------------------------------------------------------------------------------- waits


@dataclass(frozen=True, slots=True)
class RateLimitWait:
    """A request of ``model`` waits ``seconds``: for its limit's budget, or after the provider's 429."""

    model: str
    seconds: float
    reason: Literal["rate_limit", "provider_429"]


WaitListener = Callable[[RateLimitWait], Awaitable[None]]

# Which run a model's request belongs to is not the model's business (one model serves many runs):
# the run sets its listener here around its model call, and the request's task inherits it.
_listener: ContextVar[WaitListener | None] = ContextVar("agentkit_rate_limit_waits", default=None)


@contextmanager
def report_waits(listener: WaitListener) -> Iterator[None]:
    """Within the block (and tasks started in it), a model's rate-limit waits are told to ``listener``."""
    token = _listener.set(listener)
    try:
        yield
    finally:
        _listener.reset(token)


async def notify_wait(wait: RateLimitWait) -> None:
    listener = _listener.get()
    if listener is not None:
        await listener(wait)
