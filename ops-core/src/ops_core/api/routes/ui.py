"""``/ui``: the dashboard, static files shipped inside the package (``ops_core/ui``), no build step.

The page is plain HTML, CSS and JavaScript modules. It calls the same ``/v1``
API as every client, with the key the user types (kept in the tab's
sessionStorage and sent as ``Authorization: Bearer``), so it sees exactly
what that key may see. The files themselves are public: they hold no data.

A strict Content-Security-Policy allows scripts, styles and requests from this
origin only: nothing is fetched from elsewhere, and an injected ``<script>``
or inline handler would not run, so a task's text cannot reach the key.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import RedirectResponse
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

UI_URL = "/ui"
UI_DIR = Path(__file__).resolve().parent.parent.parent / "ui"

HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self';"
        " base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Revalidated on every load (cheap, with the ETag), so an upgraded server serves its own page.
    "Cache-Control": "no-cache",
}


class _Assets(StaticFiles):
    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(HEADERS)
        return response


router = APIRouter(include_in_schema=False)


@router.get(UI_URL)
async def ui_root(request: Request) -> RedirectResponse:
    # Relative to the root path, so the page also works behind a proxy that serves the API under a prefix.
    return RedirectResponse(request.scope.get("root_path", "").rstrip("/") + UI_URL + "/")


def install_ui(app: FastAPI) -> None:
    """Serve the dashboard at ``/ui/``."""
    app.include_router(router)
    app.mount(UI_URL, _Assets(directory=str(UI_DIR), html=True), name="ui")
