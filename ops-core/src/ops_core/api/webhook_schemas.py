"""Response bodies of ``/v1/webhooks``, ``/v1/tasks/{id}/webhooks`` and ``/v1/workflows/{id}/webhooks``."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Self
from uuid import UUID

from pydantic import BaseModel, Field

from ops_core.db.webhooks import WebhookAttempt, WebhookDelivery, WebhookSecret, WebhookStatus


class WebhookSecretPublic(BaseModel):
    tenant: str
    secret: str = Field(description="Standard Webhooks secret (whsec_…): give it to your receiver's verifier.")
    created_at: datetime
    rotated_at: datetime | None
    previous_valid_until: datetime | None = Field(
        description="After a rotation, deliveries are also signed with the previous secret until then."
    )

    @classmethod
    def from_secret(cls, secret: WebhookSecret) -> Self:
        return cls(
            tenant=secret.tenant,
            secret=secret.secret,
            created_at=secret.created_at,
            rotated_at=secret.rotated_at,
            previous_valid_until=secret.previous_until,
        )


class WebhookAttemptPublic(BaseModel):
    attempt: int
    started_at: datetime
    duration_ms: float
    status_code: int | None = Field(description="The receiver's HTTP status; null when no answer came.")
    error: str | None = Field(description="Why the attempt failed; null when it delivered.")

    @classmethod
    def from_attempt(cls, attempt: WebhookAttempt) -> Self:
        return cls(
            attempt=attempt.attempt,
            started_at=attempt.started_at,
            duration_ms=round(attempt.duration_ms, 3),
            status_code=attempt.status_code,
            error=attempt.error,
        )


class WebhookDeliveryPublic(BaseModel):
    id: UUID
    webhook_id: str = Field(description="The webhook-id header every attempt of this delivery carries.")
    tenant: str
    subject_type: str = Field(description="What ended: 'task' or 'workflow' (more kinds may follow).")
    subject_id: str
    event_type: str = Field(
        description="task.completed, task.failed, task.cancelled, workflow.completed, workflow.failed or"
        " workflow.cancelled."
    )
    url: str
    status: WebhookStatus = Field(description="pending (to be retried), delivered, or failed (given up).")
    attempts: int
    next_attempt_at: datetime | None = Field(description="When the next attempt is due, while pending.")
    expires_at: datetime = Field(description="Retries stop after this.")
    created_at: datetime
    delivered_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    payload: Any = Field(description="The JSON body every attempt sends.")
    history: list[WebhookAttemptPublic]

    @classmethod
    def from_delivery(cls, delivery: WebhookDelivery) -> Self:
        pending = delivery.status is WebhookStatus.PENDING
        return cls(
            id=delivery.id,
            webhook_id=delivery.webhook_id,
            tenant=delivery.tenant,
            subject_type=delivery.subject_type,
            subject_id=delivery.subject_id,
            event_type=delivery.event_type,
            url=delivery.url,
            status=delivery.status,
            attempts=delivery.attempts,
            next_attempt_at=delivery.next_attempt_at if pending else None,
            expires_at=delivery.expires_at,
            created_at=delivery.created_at,
            delivered_at=delivery.delivered_at,
            last_status_code=delivery.last_status_code,
            last_error=delivery.last_error,
            payload=json.loads(delivery.payload),
            history=[WebhookAttemptPublic.from_attempt(a) for a in delivery.history],
        )


class WebhookDeliveriesPublic(BaseModel):
    items: list[WebhookDeliveryPublic]
