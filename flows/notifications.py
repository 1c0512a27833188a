"""Webhook notifications as Prefect automations: a sweep failed, a model became champion.

``sweepflow notifications --webhook-url URL`` (or ``SWEEPFLOW_WEBHOOK_URL``) saves the URL in a
Prefect webhook block and creates (or replaces) two automations on the Prefect server. The
server sends the webhooks; the URL lives in the block, never in logs, MLflow or artifacts.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from prefect.automations import Automation
from prefect.blocks.notifications import CustomWebhookNotificationBlock
from prefect.events.actions import SendNotification
from prefect.events.schemas.automations import EventTrigger, Posture

from flows.events import CHAMPION_EVENT

BLOCK_NAME = "sweepflow-webhook"
FAILED_AUTOMATION = "sweepflow: sweep failed"
CHAMPION_AUTOMATION = "sweepflow: new champion"


@dataclass(frozen=True)
class NotificationSetup:
    """What was created on the Prefect server."""

    block_name: str
    automations: tuple[str, ...]


def _replace(automation: Automation) -> Automation:
    """Create ``automation``, deleting an older one of the same name first (idempotent)."""
    with contextlib.suppress(ValueError):  # ValueError: none of that name yet
        Automation.read(name=automation.name).delete()
    return automation.create()


def setup_notifications(webhook_url: str, *, flow_name: str = "sweep") -> NotificationSetup:
    """Save the webhook block and (re)create the two automations that use it."""
    block = CustomWebhookNotificationBlock(
        name=BLOCK_NAME,
        url=webhook_url,
        method="POST",
        json_data={"subject": "{{subject}}", "body": "{{body}}", "source": "sweepflow"},
    )
    block_id = block.save(BLOCK_NAME, overwrite=True)
    failed = _replace(
        Automation(
            name=FAILED_AUTOMATION,
            description="Webhook when a sweep flow run fails.",
            trigger=EventTrigger(
                expect={"prefect.flow-run.Failed"},
                match_related={"prefect.resource.role": "flow", "prefect.resource.name": flow_name},
                posture=Posture.Reactive,
                threshold=1,
            ),
            actions=[
                SendNotification(
                    block_document_id=block_id,
                    subject="sweep failed",
                    body="Sweep flow run {{ flow_run.name }} ({{ flow_run.id }}) failed: "
                    "{{ flow_run.state.message }}",
                )
            ],
        )
    )
    champion = _replace(
        Automation(
            name=CHAMPION_AUTOMATION,
            description="Webhook when a sweep or a promotion makes a new champion.",
            trigger=EventTrigger(
                expect={CHAMPION_EVENT},
                match={"prefect.resource.id": "mlflow.model.*"},
                posture=Posture.Reactive,
                threshold=1,
            ),
            actions=[
                SendNotification(
                    block_document_id=block_id,
                    subject="new champion",
                    body="{{ event.payload.model_name }} version {{ event.payload.version }} "
                    "is the new champion (holdout ROC AUC {{ event.payload.holdout_roc_auc }}).",
                )
            ],
        )
    )
    return NotificationSetup(block_name=BLOCK_NAME, automations=(failed.name, champion.name))
