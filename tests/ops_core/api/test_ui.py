"""``/ui``: the dashboard's files are served by the API itself, need no key, and carry a strict CSP."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from ops_core.api.routes.ui import UI_DIR

SVG_NAMESPACE = "http://www.w3.org/2000/svg"


async def test_ui_redirects_to_its_page_which_loads_with_no_key(anonymous: httpx.AsyncClient) -> None:
    redirect = await anonymous.get("/ui")
    assert redirect.status_code == 307 and redirect.headers["location"] == "/ui/"
    page = await anonymous.get("/ui/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="js/app.js">' in page.text
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "connect-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert (await anonymous.get("/v1/tasks")).status_code == 401  # the data still needs a key


@pytest.mark.parametrize("path", ["js/app.js", "js/sse.js", "style.css"])
async def test_assets_are_served_with_their_types(anonymous: httpx.AsyncClient, path: str) -> None:
    response = await anonymous.get(f"/ui/{path}")
    assert response.status_code == 200
    expected = "text/css" if path.endswith(".css") else "javascript"
    assert expected in response.headers["content-type"]
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_nothing_outside_the_ui_folder_is_served(anonymous: httpx.AsyncClient) -> None:
    for path in ("/ui/../api/app.py", "/ui/%2e%2e/api/app.py", "/ui/missing.js"):
        assert (await anonymous.get(path)).status_code == 404


def test_every_module_imported_by_the_page_exists_and_nothing_comes_from_elsewhere() -> None:
    """No bundler checks the imports: this does, and that no file names another origin."""
    scripts = list(UI_DIR.rglob("*.js"))
    assert scripts
    for script in scripts:
        text = script.read_text()
        for target in re.findall(r'^import .* from "([^"]+)";$', text, flags=re.MULTILINE):
            assert target.startswith("."), f"{script.name} imports {target}: only files of the page"
            assert (script.parent / target).resolve().is_file(), f"{script.name} imports a missing {target}"
    for file in [*scripts, UI_DIR / "index.html", UI_DIR / "style.css"]:
        text = Path(file).read_text().replace(SVG_NAMESPACE, "")  # a name, never fetched
        assert not re.search(r"https?://", text), f"{file.name} names another origin"
