"""Server processes for the benchmarks: the live suite's ``ManagedProcess`` for any executable.

``opscore`` processes use :class:`tests.support.processes.ManagedProcess` as
is; the baselines run other console scripts of the same environment
(``dramatiq``, ``celery``, ``uvicorn``), so they are started the same way, in
their own session so a stop reaches the processes they fork.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.processes import REPO_ROOT, ManagedProcess

BIN = Path(sys.executable).parent


class Command(ManagedProcess):
    """A ``ManagedProcess`` whose first argument is a console script of this environment."""

    def start(self) -> Command:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [str(BIN / self.args[0]), *self.args[1:]],
            env=self.env,
            cwd=REPO_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        return self
