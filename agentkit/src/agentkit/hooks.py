"""The callbacks a host plugs into a run."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from agentkit.approval import Approval, Deferred
from agentkit.events import RunEvent
from agentkit.messages import ToolCall
from agentkit.models.base import DeltaCallback
from agentkit.outcome import Checkpoint
from agentkit.policy import PolicyDecision

__all__ = ["RunHooks"]


@dataclass(frozen=True)
class RunHooks:
    """Optional host callbacks; every field may be left out.

    * ``on_event``: receives every :class:`RunEvent` in order, awaited before the run goes on.
    * ``cancelled``: an event the host sets to cancel the run. It is waited on,
      not polled, so a host holding many runs at once should prefer it.
    * ``is_cancelled``: checked before each step and polled every
      ``cancel_poll_interval`` seconds while a model call or tools run; when it
      answers ``True`` the in-flight work is cancelled and the run ends with
      ``RunCancelled``. May be sync or async.
    * ``on_checkpoint``: receives a :class:`Checkpoint` after each finished step.
    * ``on_delta``: streamed answer text, passed to the model as ``on_delta``.
    * ``approve``: decides calls the policy marked ``approval_required``: ``True``/``False``,
      an :class:`~agentkit.approval.Approval` (with a reason, maybe edited arguments), or
      :data:`~agentkit.approval.DEFER` to suspend the run until a person decides.
    """

    on_event: Callable[[RunEvent], Awaitable[None]] | None = None
    cancelled: asyncio.Event | None = None
    is_cancelled: Callable[[], Awaitable[bool] | bool] | None = None
    on_checkpoint: Callable[[Checkpoint], Awaitable[None]] | None = None
    on_delta: DeltaCallback | None = None
    approve: Callable[[ToolCall, PolicyDecision], Awaitable[bool | Approval | Deferred]] | None = None
    cancel_poll_interval: float = 0.1
