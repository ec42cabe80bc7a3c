"""Where a worker's MCP servers get their credentials: settings first, then the process environment.

Agent definitions write ``${NAME}`` in an MCP server's headers, env, args or
url (see :mod:`agentkit.mcp`); the worker resolves ``NAME`` from
``OPSCORE_MCP_ENV`` or its own environment when it connects. Task input is
never consulted, so a task cannot choose or read a server's credentials.
"""

from __future__ import annotations

import os
from collections import ChainMap
from collections.abc import Mapping

from ops_core.config import Settings


def mcp_environment(settings: Settings) -> Mapping[str, str]:
    configured = {name: secret.get_secret_value() for name, secret in settings.mcp_env.items()}
    return ChainMap(configured, os.environ)
