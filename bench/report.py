"""Writes docs/benchmarks.md: the machine, every figure with its N and conditions, ratios, PASS/MISS."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from bench.baselines.dramatiq_base import THREADS
from bench.load import MAX_IN_FLIGHT, MAX_P99_SECONDS, MIN_ACHIEVED_FRACTION, Load
from bench.results import CELERY_PG, DRAMATIQ_PG, OPSCORE, Results
from bench.stats import Latency, ratio

IO_MIN_RUNNING = 1000
IO_MIN_IDEAL = 0.9
IO_MAX_RSS_MB = 500


@dataclass(frozen=True)
class Target:
    name: str
    measured: str
    ratio: float  # the measured ratio, or the measured value where no baseline applies
    ok: bool | None  # None: not measured

    @property
    def verdict(self) -> str:
        return "n/a" if self.ok is None else ("PASS" if self.ok else "MISS")


def _table(header: Iterable[str], rows: Iterable[Iterable[object]]) -> str:
    head = list(header)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _ms(seconds: float) -> str:
    return "—" if math.isnan(seconds) else f"{seconds * 1000:.1f}"


def _x(value: float) -> str:
    return "—" if math.isnan(value) else f"{value:.2f}×"


def targets(r: Results) -> list[Target]:
    found: list[Target] = []
    for p in r.config.processes:
        ours, floor, celery = r.drains.get((OPSCORE, p)), r.drains.get((DRAMATIQ_PG, p)), r.drains.get((CELERY_PG, p))
        if ours and floor:
            x = ratio(ours.steady_rate, floor.steady_rate)
            found.append(
                Target(
                    f"drain ≥ 0.5× (b), {p}p (stretch 0.8×)",
                    f"{ours.steady_rate:.0f} vs {floor.steady_rate:.0f} tasks/s",
                    x,
                    x >= 0.5,
                )
            )
        else:
            found.append(Target(f"drain ≥ 0.5× (b), {p}p", "not measured", math.nan, None))
        if ours and celery:
            x = ratio(ours.steady_rate, celery.steady_rate)
            found.append(
                Target(
                    f"drain ≥ 1.0× Celery (c), {p}p",
                    f"{ours.steady_rate:.0f} vs {celery.steady_rate:.0f} tasks/s",
                    x,
                    x >= 1.0,
                )
            )
        else:
            found.append(Target(f"drain ≥ 1.0× Celery (c), {p}p", "not measured", math.nan, None))
    ours_s, bare_s = r.submits.get("ops-core"), r.submits.get("bare")
    if ours_s and bare_s:
        x = ratio(ours_s.max_rate, bare_s.max_rate)
        found.append(
            Target("submit max rate ≥ 0.8× (d)", f"{ours_s.max_rate:.0f} vs {bare_s.max_rate:.0f} req/s", x, x >= 0.8)
        )
        x = ratio(ours_s.at_rate.latency.p99, bare_s.at_rate.latency.p99)
        found.append(
            Target(
                f"submit p99 ≤ 1.5× (d) at {r.config.submit_rate:g} req/s",
                f"{_ms(ours_s.at_rate.latency.p99)} vs {_ms(bare_s.at_rate.latency.p99)} ms",
                x,
                x <= 1.5,
            )
        )
    io = r.io_bound
    if io:
        found.append(
            Target(
                f"I/O-bound ≥ {IO_MIN_RUNNING} runs in flight",
                f"{io.max_running} max running",
                io.max_running,
                io.max_running >= IO_MIN_RUNNING,
            )
        )
        x = ratio(io.throughput, io.ideal)
        found.append(
            Target(
                f"I/O-bound throughput ≥ {IO_MIN_IDEAL}× ideal",
                f"{io.throughput:.0f} vs {io.ideal:.0f} tasks/s",
                x,
                x >= IO_MIN_IDEAL,
            )
        )
        found.append(
            Target(
                f"I/O-bound worker RSS < {IO_MAX_RSS_MB} MB",
                f"{io.rss_peak_mb:.0f} MB",
                io.rss_peak_mb,
                io.rss_peak_mb < IO_MAX_RSS_MB,
            )
        )
    ours_e, bare_e = r.e2e.get("ops-core"), r.e2e.get("bare")
    if ours_e and bare_e:
        x = ratio(ours_e.dispatch.p99, bare_e.dispatch.p99)
        found.append(
            Target(
                f"dispatch p99 ≤ 3× raw Dramatiq at {r.config.e2e_rate:g}/s",
                f"{_ms(ours_e.dispatch.p99)} vs {_ms(bare_e.dispatch.p99)} ms",
                x,
                x <= 3.0,
            )
        )
    return found


def _drain_section(r: Results) -> str:
    floor = {p: r.drains.get((DRAMATIQ_PG, p)) for p in r.config.processes}
    rows = []
    for (name, p), d in sorted(r.drains.items()):
        base = floor.get(p)
        rss = r.opscore_drains[p].rss_mb if name == OPSCORE and p in r.opscore_drains else None
        rows.append(
            [
                name,
                p,
                d.n,
                f"{d.seconds:.1f}",
                f"{d.rate:.0f}",
                f"{d.steady_rate:.0f}",
                _x(ratio(d.steady_rate, base.steady_rate)) if base else "—",
                ", ".join(f"{round_.steady_rate:.0f}" for round_ in r.drain_rounds.get((name, p), [])),
                f"{max(rss.values()):.0f}" if rss else "",
            ]
        )
    return _table(
        [
            "system",
            "processes",
            "N",
            "start → drained (s)",
            "tasks/s from start",
            "tasks/s steady",
            "steady vs (b)",
            "every round, steady tasks/s",
            "peak worker RSS (MB)",
        ],
        rows,
    )


def _load_row(name: str, load: Load) -> list[object]:
    lat = load.latency
    return [
        name,
        f"{load.offered:g}",
        f"{load.achieved:.1f}",
        load.ok,
        load.errors,
        load.dropped,
        load.late,
        _ms(lat.p50),
        _ms(lat.p95),
        _ms(lat.p99),
        "yes" if load.sustained else "no",
    ]


LOAD_HEADER = [
    "system",
    "offered req/s",
    "achieved req/s",
    "ok",
    "errors",
    "dropped",
    "late sends",
    "p50 ms",
    "p95 ms",
    "p99 ms",
    "sustained",
]


def _submit_section(r: Results) -> str:
    fixed = [_load_row(key, s.at_rate) for key, s in r.submits.items()]
    steps = [_load_row(key, step) for key, s in r.submits.items() for step in s.steps]
    best = [[key, f"{s.max_rate:.0f}", f"{s.rss_idle_mb:.0f}", f"{s.rss_peak_mb:.0f}"] for key, s in r.submits.items()]
    return "\n\n".join(
        [
            f"At the same offered rate ({r.config.submit_rate:g} req/s for {r.config.submit_seconds:g} s):",
            _table(LOAD_HEADER, fixed),
            f"Highest sustained rate (steps of {r.config.step_seconds:g} s; sustained = no errors or drops, "
            f"achieved ≥ {MIN_ACHIEVED_FRACTION:.0%} of offered, ≤ 5% late sends, "
            f"p99 ≤ {MAX_P99_SECONDS * 1000:.0f} ms):",
            _table(["system", "max sustained req/s", "API RSS idle (MB)", "API RSS peak (MB)"], best),
            "Every step:",
            _table(LOAD_HEADER, steps),
        ]
    )


def _latency_cells(lat: Latency) -> list[str]:
    return [str(lat.n), _ms(lat.p50), _ms(lat.p95), _ms(lat.p99), _ms(lat.max)]


def _e2e_section(r: Results) -> str:
    rows = []
    for key, e in r.e2e.items():
        rows.append([key, "submit → running", f"{e.load.achieved:.1f}", *_latency_cells(e.dispatch)])
        rows.append([key, "submit → completed", f"{e.load.achieved:.1f}", *_latency_cells(e.total)])
    memory = [[key, f"{e.rss_worker_idle_mb:.0f}", f"{e.rss_worker_peak_mb:.0f}"] for key, e in r.e2e.items()]
    return "\n\n".join(
        [
            _table(["system", "interval", "achieved submit/s", "N", "p50 ms", "p95 ms", "p99 ms", "max ms"], rows),
            "Largest worker process RSS (after warm-up, and peak under this load):",
            _table(["system", "idle MB", "under load MB"], memory),
        ]
    )


def _io_section(r: Results) -> str:
    io = r.io_bound
    if io is None:
        return "Not measured (see Errors)."
    return _table(
        [
            "tasks",
            "concurrency",
            "model delay (s)",
            "completed",
            "failed",
            "max running at once",
            "first claim → last completion (s)",
            "tasks/s",
            "ideal tasks/s",
            "vs ideal",
            "peak worker RSS (MB)",
        ],
        [
            [
                io.n,
                io.concurrency,
                f"{io.delay:g}",
                io.completed,
                io.failed,
                io.max_running,
                f"{io.span_seconds:.1f}",
                f"{io.throughput:.1f}",
                f"{io.ideal:.0f}",
                _x(ratio(io.throughput, io.ideal)),
                f"{io.rss_peak_mb:.0f}",
            ]
        ],
    )


METHOD = """\
- **Same run, same servers.** Every system uses the same PostgreSQL and RabbitMQ, each scenario with its own
  scratch database and queue (deleted afterwards), one after another so no two compete.
- **Workers are real processes** started by each framework's own CLI: `dramatiq bench.baselines.…:setup
  --processes P --threads {threads}`, `celery worker --pool prefork --concurrency P`, `opscore worker --processes P
  --threads {threads}` (production defaults otherwise: `OPSCORE_WORKER_CONCURRENCY=100`, `OPSCORE_DB_POOL_SIZE=10`,
  log level INFO). The baselines' asyncpg pools have 10 connections, like ops-core's.
- **Drain.** A backlog of N messages is in RabbitMQ before the workers consume; completion is read from
  PostgreSQL (a COUNT of completed rows polled every 50 ms; for the no-op actor, a counter row its
  middleware adds to every 20 ms), never from the broker. *From start* includes process start-up
  (imports, connections); *steady* runs from the first observed completion to the last, which is the rate
  the ratios use, because start-up is not throughput and (below) ops-core's is measured differently.
- **Rounds.** This machine's speed drifts by up to 2× over minutes (other tenants), so one measurement
  per system, minutes apart, compares the drift more than the systems. Each round drains every system in
  turn, for 1 then 2 processes; each row is that system's median round, and every round is listed.
- **ops-core's backlog** is submitted through `POST /v1/tasks` while no worker runs, so its messages are in
  RabbitMQ before the workers start, as in the baselines; the API is stopped while the workers drain.
- **ops-core tasks** run the built-in `default` agent on the offline model with the goal "say hello":
  one model call, no tool call; every status change, model call and usage is recorded as in production.
- **Celery (c)** uses the prefork pool with concurrency = processes, so "2 processes" means two processes
  executing tasks, as for Dramatiq and ops-core (a thread pool would share one GIL); `acks_late` to match
  Dramatiq's ack-after-processing; results, events, gossip, mingle and heartbeats off, as ops-core keeps
  its state in PostgreSQL.
- **Submit.** An open-loop generator (async httpx, one process) sends on a fixed schedule whatever the
  server does, with at most {max_in_flight} requests in flight; latency is from the actual send to the
  response; sends more than 5 ms behind schedule are counted as late. Bare FastAPI (d) inserts a row with
  asyncpg and publishes a Dramatiq message with publisher confirms from a thread, as ops-core does; both run
  one uvicorn process at its defaults (access log on). Both APIs run side by side and take turns: the
  fixed-rate run and every step of the rate search are measured for (d), then at once for ops-core.
- **End-to-end.** The same generator at {e2e_rate:g} tasks/s for {e2e_seconds:g} s against a running
  system with {e2e_processes} worker processes, after 50 warm-up tasks that are left out. Latencies come
  from the task rows: created_at (API insert) → started_at (claim) → finished_at. The raw-Dramatiq figure
  is the bare pipeline (d) → (b) under the identical load: insert + publish in FastAPI, then an async
  Dramatiq actor whose first UPDATE stamps started_at, so both include the API's publish.
- **I/O-bound.** Tasks whose one model call waits {io_delay:g} s at the live suite's fake OpenAI server
  (`tests/support/fake_openai.py`, model `openai:fake`), one worker process with
  `OPSCORE_WORKER_CONCURRENCY={io_concurrency}`; running tasks counted every 200 ms; throughput is
  completed tasks over first claim → last completion; ideal is concurrency / delay.
- **Memory** is RSS (psutil) of each process of a server's process tree, sampled every 250 ms; the
  largest single process is reported.
"""


FINDINGS = Path(__file__).with_name("findings.md")


def write(r: Results, path: Path, images: list[Path]) -> Path:
    cfg = r.config
    verdicts = targets(r)
    parts = [
        "# Benchmarks",
        'Generated by the benchmark suite in `bench/` (GitHub issue "Performance"); do not edit by hand. '
        "Every ops-core figure is a ratio against a baseline measured in the same run on the same machine.",
        f"**Command:** `{cfg.command}` ({'quick smoke run' if cfg.quick else 'full run'}), "
        f"run {time.strftime('%Y-%m-%d %H:%M %Z')}, {r.seconds / 60:.1f} minutes.",
        "## Machine",
        _table(["", ""], r.machine.items()),
        "## Targets",
        _table(
            ["target", "measured", "ratio / value", "verdict"],
            [
                [t.name, t.measured, _x(t.ratio) if "×" in t.name or "p99" in t.name else f"{t.ratio:.0f}", t.verdict]
                for t in verdicts
            ],
        ),
        "## Drain throughput",
        f"Backlog of N={cfg.n} tasks per row, median of {cfg.rounds} interleaved rounds; {THREADS} Dramatiq threads per"
        " process where Dramatiq is used.",
        _drain_section(r),
        *(f"![{image.stem}]({image.name})" for image in images),
        "## Submit (`POST /v1/tasks`, no workers running)",
        _submit_section(r),
        f"## End-to-end latency at {cfg.e2e_rate:g} tasks/s",
        _e2e_section(r),
        "## I/O-bound concurrency",
        _io_section(r),
        "## Findings",
        FINDINGS.read_text().strip(),
        "## Method and conditions",
        METHOD.format(
            max_in_flight=MAX_IN_FLIGHT,
            threads=THREADS,
            e2e_rate=cfg.e2e_rate,
            e2e_seconds=cfg.e2e_seconds,
            e2e_processes=cfg.e2e_processes,
            io_delay=cfg.io_delay,
            io_concurrency=cfg.io_concurrency,
        ),
    ]
    if r.errors:
        parts += ["## Errors", *(f"- **{name}**:\n\n```\n{error}\n```" for name, error in r.errors.items())]
    path.write_text("\n\n".join(parts) + "\n")
    return path
