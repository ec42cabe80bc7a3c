"""Resident memory of server processes and everything they fork, sampled in the background."""

from __future__ import annotations

import threading
from collections.abc import Iterable

import psutil

MB = 1024 * 1024


def tree_rss(root_pid: int) -> dict[int, float]:
    """RSS in MB of ``root_pid`` and its descendants, keyed by pid (vanished processes are skipped)."""
    try:
        root = psutil.Process(root_pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return {}
    found: dict[int, float] = {}
    for process in processes:
        try:
            found[process.pid] = process.memory_info().rss / MB
        except psutil.NoSuchProcess:
            continue
    return found


class RssSampler:
    """Keeps each process's peak RSS while a load runs; the peak is what sizing needs, not the mean."""

    def __init__(self, root_pids: Iterable[int], interval: float = 0.25) -> None:
        self._roots = list(root_pids)
        self._interval = interval
        self._peaks: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while True:
            self._sample()
            if self._stop.wait(self._interval):
                return

    def _sample(self) -> None:
        for root in self._roots:
            for pid, rss in tree_rss(root).items():
                self._peaks[pid] = max(rss, self._peaks.get(pid, 0.0))

    def peaks(self) -> dict[int, float]:
        return dict(self._peaks)


def largest(peaks: dict[int, float]) -> float:
    """The largest single process: the one that decides whether a process fits its memory budget."""
    return max(peaks.values(), default=0.0)
