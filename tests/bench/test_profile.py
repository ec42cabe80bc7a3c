"""The profile summary charges each sample to the innermost frame it can name."""

from __future__ import annotations

from pathlib import Path

from bench.profile import census, component, summarise

CLAIM = "TaskStore.claim (ops_core/db/store.py:194)"
FETCH = "Connection.fetchrow (asyncpg/connection.py:775)"
RUN = "AgentRun._loop (agentkit/run.py:136)"


def test_a_sample_goes_to_its_innermost_known_frame() -> None:
    assert component(["Thread.run (threading.py:982)", CLAIM, FETCH]) == "asyncpg (incl. socket writes)"
    assert component(["Thread.run (threading.py:982)", CLAIM, "<lambda> (<string>:1)"]) == "ops_core.db"
    assert component(["<module> (x.py:1)"]) == "other"


def test_summary_shares_add_up_per_library_and_count_our_frames_inclusively(tmp_path: Path) -> None:
    raw = tmp_path / "samples.txt"
    raw.write_text(f"a (threading.py:1);{CLAIM};{FETCH} 3\na (threading.py:1);{RUN} 1\n")
    text = summarise(raw, top=5)
    assert "4 samples" in text
    assert "75.0%  asyncpg (incl. socket writes)" in text and "25.0%  agentkit" in text
    assert f"75.0%  {CLAIM}" in text and f"25.0%  {RUN}" in text


def test_an_empty_profile_says_so(tmp_path: Path) -> None:
    raw = tmp_path / "samples.txt"
    raw.write_text("")
    assert "no samples" in summarise(raw, top=5)


def test_census_reports_cores_per_process_name_over_the_window() -> None:
    before = {1: ("postgres", 10.0), 2: ("postgres", 5.0), 3: ("opscore", 100.0)}
    after = {1: ("postgres", 12.0), 2: ("postgres", 6.0), 3: ("opscore", 107.0), 4: ("beam.smp", 0.5)}
    assert (
        census(before, after, seconds=10.0) == "cores used while sampling: opscore 0.70, postgres 0.30, beam.smp 0.05"
    )
