"""The workspace installs this repository's packages, never PyPI's unrelated ``agentkit`` or ``ops-core``."""

from __future__ import annotations

import importlib
import importlib.metadata
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("module", "source_dir"),
    [("agentkit", "agentkit/src/agentkit"), ("ops_core", "ops-core/src/ops_core"), ("opscore_app", "src/opscore_app")],
)
def test_modules_are_imported_from_this_repository(module: str, source_dir: str) -> None:
    imported = importlib.import_module(module)
    assert imported.__file__ is not None
    assert Path(imported.__file__).resolve().parent == REPO / source_dir


@pytest.mark.parametrize("distribution", ["agentkit", "ops-core"])
def test_installed_distributions_are_the_local_editable_ones(distribution: str) -> None:
    dist = importlib.metadata.distribution(distribution)
    # uv and pip record an editable install of a local path in direct_url.json.
    direct_url = dist.read_text("direct_url.json")
    assert direct_url is not None, f"{distribution} was not installed from a local path"
    assert REPO.as_uri() in direct_url, direct_url
