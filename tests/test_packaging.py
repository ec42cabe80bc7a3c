"""The workspace installs this repository's packages, never PyPI's unrelated ``agentkit`` or ``ops-core``."""

from __future__ import annotations

import importlib
import importlib.metadata
import shlex
from pathlib import Path

import pytest
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

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


# PyPI's projects of these names are unrelated to ours, so the docs may only show installs from a
# path or a URL, never the bare name (with or without extras or a version).
OUR_DISTRIBUTIONS = {"agentkit", "ops-core", "opscore"}
INSTALL_COMMANDS = [  # found anywhere in a line, so "python -m pip install" counts too
    ["uv", "add"],
    ["uv", "pip", "install"],
    ["uv", "tool", "install"],
    ["pip", "install"],
    ["pip3", "install"],
    ["pipx", "install"],
    ["poetry", "add"],
]


def _installs_ours_from_an_index(line: str) -> bool:
    try:
        words = shlex.split(line, comments=True)
    except ValueError:  # an unbalanced quote in prose
        words = line.split()
    for start in range(len(words)):
        for command in INSTALL_COMMANDS:
            if words[start : start + len(command)] != command:
                continue
            arguments = words[start + len(command) :]
            for position, argument in enumerate(arguments):
                if argument in ("&&", "||", ";", "|"):
                    break
                if argument.startswith("-"):
                    continue
                try:
                    requirement = Requirement(argument)
                except InvalidRequirement:  # a path such as ./agentkit
                    continue
                from_url = requirement.url is not None or arguments[position + 1 : position + 2] == ["@"]
                if canonicalize_name(requirement.name) in OUR_DISTRIBUTIONS and not from_url:
                    return True
    return False


@pytest.mark.parametrize(
    ("line", "bad"),
    [
        ("uv add agentkit", True),
        ('uv add "agentkit[openai]"    # provider SDKs', True),
        ("pip install -U agentkit==0.1.0", True),
        ("python -m pip install ops-core", True),
        ("$ uv pip install ops_core && uv run opscore dev", True),
        ("uv add ./agentkit --extra openai", False),
        ('pip install "./agentkit[openai]"', False),
        ('uv add "agentkit[openai] @ git+https://github.com/o/r.git#subdirectory=agentkit"', False),
        ("pip install agentkit @ git+https://github.com/o/r.git#subdirectory=agentkit", False),
        ("python3 -m pip install uv && uv run opscore dev", False),
    ],
)
def test_the_install_line_check_tells_a_bare_name_from_a_path_or_url(line: str, bad: bool) -> None:
    assert _installs_ours_from_an_index(line) is bad


def test_the_docs_never_install_our_packages_from_an_index() -> None:
    docs = [*REPO.glob("*.md"), *REPO.glob("*/*.md"), *(REPO / "docs").rglob("*.md")]
    docs = [path for path in docs if not any(part.startswith(".") for part in path.relative_to(REPO).parts)]
    assert REPO / "README.md" in docs and REPO / "agentkit" / "README.md" in docs
    offending = [
        f"{path.relative_to(REPO)}:{number}: {line.strip()}"
        for path in docs
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if _installs_ours_from_an_index(line)
    ]
    assert offending == []
