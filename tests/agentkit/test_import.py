"""``import agentkit`` must be inert: no sockets, no environment reads, no provider SDKs, no ops_core."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = r"""
import json, os, sys
from collections.abc import MutableMapping

events = []

def audit(event, args):
    if event.startswith("socket."):
        events.append(event)

sys.addaudithook(audit)


AGENTKIT_DIR = os.path.dirname(__import__("importlib.util").util.find_spec("agentkit").origin)
PLUMBING = ("os.py", "<frozen os>", "_collections_abc.py", "<frozen _collections_abc>", "posixpath.py",
            "<frozen posixpath>")


def reader():
    # The first frame that is not environ/os plumbing is the code that asked for the variable.
    import traceback
    for frame in reversed(traceback.extract_stack()[:-3]):
        if not frame.filename.endswith(PLUMBING):
            return frame.filename
    return "?"


class RecordingEnviron(MutableMapping):
    # Replaces os.environ so every read is recorded (os.getenv goes through it too),
    # with the file that made it: dependencies (pydantic, zoneinfo) read a few
    # variables of their own at import, agentkit's own code must read none.
    def __init__(self, data):
        self._data = dict(data)
        self.reads = []

    def _record(self, key):
        self.reads.append([key, reader().startswith(AGENTKIT_DIR)])

    def __getitem__(self, key):
        self._record(key)
        return self._data[key]

    def __setitem__(self, key, value):
        self._data[key] = value

    def __delitem__(self, key):
        del self._data[key]

    def __iter__(self):
        self._record("<iterate>")
        return iter(self._data)

    def __len__(self):
        return len(self._data)

    def get(self, key, default=None):
        self._record(key)
        return self._data.get(key, default)


recorder = RecordingEnviron(os.environ)
os.environ = recorder

import agentkit  # noqa: E402

heavy = sorted(
    m for m in sys.modules
    if m.split(".")[0] in {"openai", "anthropic", "google", "httpx", "ops_core", "opscore_app"}
)
print(json.dumps({"sockets": events, "env_reads": recorder.reads, "modules": heavy,
                  "agentkit_modules": sorted(m for m in sys.modules if m.startswith("agentkit"))}))
"""


def run_probe(code: str) -> dict[str, list[str]]:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    result: dict[str, list[str]] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_import_agentkit_is_inert() -> None:
    result = run_probe(PROBE)
    assert result["sockets"] == []
    by_agentkit = [key for key, ours in result["env_reads"] if ours]
    assert by_agentkit == []
    # What dependencies read is theirs, but none of it may be a credential or agentkit setting.
    keys = {key for key, _ in result["env_reads"]}
    assert not {k for k in keys if any(w in k.upper() for w in ("KEY", "TOKEN", "AGENTKIT", "OPENAI", "ANTHROPIC"))}
    assert result["modules"] == []
    assert "agentkit.agent" in result["agentkit_modules"]


def test_probe_detects_what_it_claims_to() -> None:
    # The same probe, with code doing the forbidden things, must see them: a socket, an
    # env read from a file inside the agentkit package, one from elsewhere, a provider SDK.
    noisy = PROBE.replace(
        "import agentkit  # noqa: E402",
        "import agentkit\nimport socket\nsocket.socket().close()\nimport httpx\n"
        "exec(compile('os.getenv(\"OPENAI_API_KEY\")', os.path.join(AGENTKIT_DIR, 'x.py'), 'exec'))\n"
        "os.environ.get('SOMEONE_ELSES')",
    )
    result = run_probe(noisy)
    assert "socket.__new__" in result["sockets"]
    assert ["OPENAI_API_KEY", True] in result["env_reads"]
    assert ["SOMEONE_ELSES", False] in result["env_reads"]
    assert "httpx" in result["modules"]
