"""``/v1/sessions``: start a conversation, read its turns, list and close sessions.

A session's turns are added by submitting tasks with ``session_id`` (``POST /v1/tasks``).
"""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Response, status

from ops_core.api.auth import Reader, Writer
from ops_core.api.deps import SettingsDep, bounded, get_runtime
from ops_core.api.errors import AUTH, INVALID, TOO_LARGE, UNAVAILABLE, Responses, error_doc
from ops_core.api.schemas import to_json
from ops_core.api.session_schemas import SessionCreate, SessionDetail, SessionPublic, SessionsPublic
from ops_core.api.storable import StorableText
from ops_core.db.sessions import SessionStore
from ops_core.domain import SessionStatus
from ops_core.runtime import Runtime
from ops_core.services.sessions import SessionService

router = APIRouter(prefix="/v1/sessions", tags=["sessions"], responses=AUTH)

MAX_PAGE = 500
MAX_TURNS = 1000
SESSION_NOT_FOUND: Responses = {404: error_doc("No session with that id in the caller's tenant")}


async def get_session_service(runtime: Annotated[Runtime, Depends(get_runtime)]) -> SessionService:
    return SessionService(SessionStore(runtime.engine), runtime.registry)


SessionServiceDep = Annotated[SessionService, Depends(get_session_service)]


def _json(body: SessionPublic | SessionDetail | SessionsPublic, status_code: int = status.HTTP_200_OK) -> Response:
    return Response(content=to_json(body), status_code=status_code, media_type="application/json")


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=SessionPublic,
    responses={**TOO_LARGE, **INVALID, **UNAVAILABLE},
)
async def create_session(
    body: SessionCreate, caller: Writer, sessions: SessionServiceDep, settings: SettingsDep
) -> Response:
    """Start a conversation with an agent; submit its turns as tasks with ``session_id``."""
    async with bounded(settings):
        session = await sessions.create(tenant=caller.tenant, agent=body.agent, metadata=body.metadata)
    return _json(SessionPublic.from_session(session), status.HTTP_201_CREATED)


@router.get("", response_model=SessionsPublic, responses={**INVALID, **UNAVAILABLE})
async def list_sessions(
    caller: Reader,
    sessions: SessionServiceDep,
    settings: SettingsDep,
    status: SessionStatus | None = None,
    agent: Annotated[StorableText | None, Query(min_length=1, max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    cursor: Annotated[StorableText | None, Query(min_length=1, max_length=500)] = None,
) -> Response:
    """The tenant's sessions (an admin's: every tenant's), newest first; follow ``next_cursor`` for older pages."""
    async with bounded(settings):
        page = await sessions.list(tenant=caller.scope, status=status, agent=agent, limit=limit, cursor=cursor)
    return _json(SessionsPublic.from_page(page))


@router.get("/{session_id}", response_model=SessionDetail, responses={**SESSION_NOT_FOUND, **INVALID, **UNAVAILABLE})
async def get_session(
    session_id: UUID,
    caller: Reader,
    sessions: SessionServiceDep,
    settings: SettingsDep,
    turns: Annotated[int, Query(ge=1, le=MAX_TURNS)] = 100,
) -> Response:
    """The session and its newest ``turns`` tasks in submission order, each with its goal, status and answer."""
    async with bounded(settings):
        session, page = await sessions.get(session_id, tenant=caller.scope, turns=turns)
    return _json(SessionDetail.from_turns(session, page))


@router.post(
    "/{session_id}/close", response_model=SessionPublic, responses={**SESSION_NOT_FOUND, **INVALID, **UNAVAILABLE}
)
async def close_session(
    session_id: UUID, caller: Writer, sessions: SessionServiceDep, settings: SettingsDep
) -> Response:
    """Close the session: new tasks for it are refused (409 ``session_closed``); tasks already submitted
    still run. Closing a closed session changes nothing."""
    async with bounded(settings):
        session = await sessions.close(session_id, tenant=caller.scope)
    return _json(SessionPublic.from_session(session))
