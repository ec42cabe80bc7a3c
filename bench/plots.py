"""The report's figures: drain throughput per process count, and the dispatch-latency distributions."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on a server
import matplotlib.pyplot as plt

from bench.results import Results

THROUGHPUT_PNG = "benchmarks-throughput.png"
LATENCY_PNG = "benchmarks-dispatch-latency.png"


def draw(results: Results, docs: Path) -> list[Path]:
    drawn = [_throughput(results, docs / THROUGHPUT_PNG)]
    if results.e2e:
        drawn.append(_dispatch_latency(results, docs / LATENCY_PNG))
    return drawn


def _throughput(results: Results, path: Path) -> Path:
    systems = sorted({name for name, _ in results.drains})
    processes = results.config.processes
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name in systems:
        xs = [p for p in processes if (name, p) in results.drains]
        ax.plot(xs, [results.drains[name, p].steady_rate for p in xs], marker="o", label=name)
    ax.set_xticks(list(processes))
    ax.set_xlabel("worker processes")
    ax.set_ylabel("tasks/s (steady drain)")
    ax.set_yscale("log")
    ax.set_title(f"Drain throughput, backlog N={results.config.n}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _dispatch_latency(results: Results, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for key, e2e in results.e2e.items():
        ms = [value * 1000 for value in e2e.dispatch_samples]
        ax.hist(ms, bins=60, alpha=0.6, label=f"{key} (p99 {e2e.dispatch.p99 * 1000:.0f} ms, N={e2e.dispatch.n})")
    ax.set_xlabel("submit → running (ms)")
    ax.set_ylabel("tasks")
    ax.set_yscale("log")
    ax.set_title(
        f"Dispatch latency at {results.config.e2e_rate:g} tasks/s, {results.config.e2e_processes} worker processes"
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
