"""Agents that misbehave on purpose, for tests of what a worker does about them (``OPSCORE_AGENTS``).

The offline model calls a tool named ``calculator`` when the goal holds
arithmetic (``What is 6 * 7?``), so each agent here names its tool that.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time

from agentkit import AgentDefinition, Policy
from agentkit.builtin_tools import calculator
from agentkit.mcp import McpServer
from agentkit.tools import tool

ARITHMETIC_GOAL = "What is 6 * 7?"
# How long ``sleepy``'s tool waits; a test may change it between runs in its own process.
SLEEP_SECONDS = {"value": 30.0}
HOG_SECONDS = 6.0
LOOP_HOG_SECONDS = 60.0


@tool(name="calculator")
def _crash(expression: str) -> str:
    """Ends the process at once, as a segfault or the OOM killer would."""
    os._exit(13)


@tool(name="calculator")
def _hog(expression: str) -> str:
    """Holds the CPU in pure Python for HOG_SECONDS (in a tool thread: it competes for the GIL)."""
    deadline = time.monotonic() + HOG_SECONDS
    spins = 0
    while time.monotonic() < deadline:
        spins += 1
    return str(spins)


@tool(name="calculator")
async def _loop_hog(expression: str) -> str:
    """Holds the worker's event loop without ever awaiting, for LOOP_HOG_SECONDS."""
    deadline = time.monotonic() + LOOP_HOG_SECONDS
    while time.monotonic() < deadline:
        pass
    return "done"


@tool(name="calculator")
async def _sleep(expression: str) -> str:
    await asyncio.sleep(SLEEP_SECONDS["value"])
    return "42"


poison = AgentDefinition(name="poison", instructions="Calculates, fatally.", tools=[_crash])
hog = AgentDefinition(name="hog", instructions="Calculates, slowly, in pure Python.", tools=[_hog])
loop_hog = AgentDefinition(name="loop_hog", instructions="Calculates on the event loop.", tools=[_loop_hog])
sleepy = AgentDefinition(name="sleepy", instructions="Calculates after a nap.", tools=[_sleep])


# The approval e2e: the fake model's ``[[tool_stall=0]]`` goals call ``calculator`` in step 1.
APPROVAL_TIMEOUT_SECONDS = 30.0
gated = AgentDefinition(
    name="gated",
    instructions="Calculates, with a person's approval.",
    tools=[calculator],
    policy=Policy(require_approval={"calculator"}),
)
gated_briefly = AgentDefinition(
    name="gated_briefly",
    instructions="Calculates, if a person approves within a short while.",
    tools=[calculator],
    policy=Policy(require_approval={"calculator"}, approval_timeout=APPROVAL_TIMEOUT_SECONDS),
)


# The MCP e2e: the reference time server from PyPI, over stdio, one per worker process.
# The offline model calls a tool the goal names, with the goal's quoted strings as arguments.
TIME_SERVER = McpServer.stdio("time", sys.executable, ["-m", "mcp_server_time"], prefix="time")
clock = AgentDefinition(
    name="clock",
    instructions="Tells the time with the time MCP server.",
    mcp_servers=[TIME_SERVER],
    policy=Policy(deny={"time_convert_time"}),
)
