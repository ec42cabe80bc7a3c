"""Request and response bodies of ``/v1/schedules``.

A schedule's ``template`` says what each tick creates; its ``kind`` is the
discriminator of :data:`ScheduleTemplate`: :class:`TaskTemplate` (``"task"``,
the default when ``kind`` is left out) or :class:`WorkflowTemplate`
(``"workflow"``). Another kind joins as another tagged member.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, Self
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator, model_validator

from ops_core.api.schemas import TaskCreate
from ops_core.api.storable import StorableText
from ops_core.api.workflow_schemas import WorkflowCreate
from ops_core.schedule_rules import MAX_CRON_CHARS, CatchUp
from ops_core.services.schedules import ScheduleView

# Set by the schedule for each tick, so a template cannot carry them.
_PER_TICK = ("idempotency_key", "run_at", "delay_seconds")


class TaskTemplate(TaskCreate):
    """The task each tick submits: a submit's body, without what the tick sets (its idempotency key and time)."""

    kind: Literal["task"] = Field(default="task", description="What each tick creates.")

    @model_validator(mode="after")
    def _no_per_tick_fields(self) -> Self:
        given = [name for name in _PER_TICK if getattr(self, name) is not None]
        if given:
            raise ValueError(f"{', '.join(given)}: set by the schedule for each tick (its key is schedule:<id>:<tick>)")
        if self.session_id is not None:
            # A tick inserts its task directly, past the checks that make a task a session's turn.
            raise ValueError("session_id: a schedule's task cannot be a session's turn; submit turns to POST /v1/tasks")
        return self

    def stored(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude={*_PER_TICK, "session_id"})


class WorkflowTemplate(WorkflowCreate):
    """The workflow each tick starts: ``POST /v1/workflows``'s body, without its idempotency key (each tick's
    is schedule:<id>:<tick>)."""

    kind: Literal["workflow"] = Field(description="What each tick creates.")

    @field_validator("idempotency_key")
    @classmethod
    def _no_key(cls, value: str | None) -> str | None:
        if value is not None:
            raise ValueError("set by the schedule for each tick (its key is schedule:<id>:<tick>)")
        return value

    def stored(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude={"idempotency_key"})


def _kind(value: Any) -> str:
    # "task" when left out: schedules created before workflow templates existed omitted it.
    kind = value.get("kind", "task") if isinstance(value, dict) else getattr(value, "kind", "task")
    return str(kind)


def _tagged_by_kind(schema: dict[str, Any]) -> None:
    """Name ``kind`` as the discriminator in the OpenAPI schema (a callable discriminator leaves it out)."""
    refs = [member.get("$ref") for member in schema.get("oneOf", [])]
    if all(refs):
        schema["discriminator"] = {
            "propertyName": "kind",
            "mapping": dict(zip(("task", "workflow"), refs, strict=True)),
        }


ScheduleTemplate = Annotated[
    Annotated[TaskTemplate, Tag("task")] | Annotated[WorkflowTemplate, Tag("workflow")],
    Discriminator(
        _kind,
        custom_error_type="invalid_template_kind",
        custom_error_message="kind must be 'task' or 'workflow'",
    ),
    Field(json_schema_extra=_tagged_by_kind),
]


class ScheduleCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cron: StorableText = Field(
        min_length=1,
        max_length=MAX_CRON_CHARS,
        description="A cron expression: five fields (minute hour day month weekday), or six with seconds last"
        " ('* * * * * */10': every ten seconds), or an alias such as '@hourly'. Read in `timezone`.",
        examples=["0 9 * * mon-fri"],
    )
    timezone: StorableText = Field(
        default="UTC", min_length=1, max_length=100, description="IANA time zone, e.g. 'Europe/Berlin'."
    )
    template: ScheduleTemplate
    catch_up: CatchUp = Field(
        default=CatchUp.SKIP,
        description="Ticks missed while no worker ran (later than OPSCORE_SCHEDULE_MISFIRE_GRACE_SECONDS):"
        " 'skip' drops them, 'run_last' runs the last of them once.",
    )
    name: StorableText | None = Field(default=None, min_length=1, max_length=200)


class SchedulePublic(BaseModel):
    id: UUID
    tenant: str
    name: str | None
    cron: str
    timezone: str
    catch_up: CatchUp
    template: dict[str, Any]
    state: Literal["active", "paused"]
    next_run_at: datetime | None = Field(description="The next tick (UTC); null while paused.")
    next_runs: list[datetime] = Field(description="The next few ticks (UTC); empty while paused.")
    last_tick_at: datetime | None = Field(description="The last tick that fired.")
    last_task_id: UUID | None = Field(description="The task the last fired tick created (a task template).")
    last_workflow_id: UUID | None = Field(
        description="The workflow the last fired tick started (a workflow template): read it at /v1/workflows/{id}."
    )
    fired: int = Field(description="Ticks that created their task or started their workflow.")
    skipped: int = Field(description="Missed ticks dropped by the catch-up policy.")
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_view(cls, shown: ScheduleView) -> SchedulePublic:
        s = shown.schedule
        active = s.state == "active"
        return cls(
            id=s.id,
            tenant=s.tenant,
            name=s.name,
            cron=s.cron,
            timezone=s.timezone,
            catch_up=CatchUp(s.catch_up),
            template=s.template,
            state="active" if active else "paused",
            next_run_at=s.next_run_at if active else None,
            next_runs=shown.next_runs,
            last_tick_at=s.last_tick_at,
            last_task_id=s.last_task_id,
            last_workflow_id=s.last_workflow_id,
            fired=s.fired,
            skipped=s.skipped,
            created_at=s.created_at,
            updated_at=s.updated_at,
        )


class SchedulesPublic(BaseModel):
    items: list[SchedulePublic]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next (older) page; null on the last.")
