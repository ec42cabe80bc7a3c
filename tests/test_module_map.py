"""The README's "Where things are" table names modules that exist, and covers the behaviours it promises."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "ops-core" / "src" / "ops_core"
REQUIRED = (
    "Submit",
    "Publish and relay",
    "Claim",
    "Run an attempt",
    "Events",
    "Checkpoints",
    "Statuses, transitions, the retry decision",
    "Crash recovery",
    "Cancel",
    "Migrations",
)


def _rows() -> dict[str, str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Where things are", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|") for line in section.splitlines() if line.startswith("| ") and "---" not in line]
    return {cells[1].strip(): cells[2] for cells in rows[1:]}


def test_every_behaviour_the_issue_names_has_a_row() -> None:
    assert set(REQUIRED) <= set(_rows())


def test_every_module_in_the_map_exists() -> None:
    named = [path for modules in _rows().values() for path in re.findall(r"`([\w/]+(?:\.py|/))`", modules)]
    assert len(named) > 20
    missing = [path for path in named if not (PACKAGE / path).exists()]
    assert missing == []
