"""``sweepflow notifications`` and ``sweepflow generate-data``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from churnml.synthetic import generate_bank_churn
from cli.common import console, fail


def notifications(
    webhook_url: Annotated[
        str,
        typer.Option(
            envvar="SWEEPFLOW_WEBHOOK_URL",
            help="URL that receives a JSON POST when a sweep fails or a model becomes champion.",
            show_default=False,
        ),
    ],
) -> None:
    """Create (or replace) the Prefect automations that send sweepflow's webhooks.

    Needs a running Prefect server (PREFECT_API_URL); the server sends the webhooks.
    """
    if not webhook_url.startswith(("http://", "https://")):
        raise fail("--webhook-url must be an http:// or https:// URL")
    from flows.notifications import setup_notifications

    created = setup_notifications(webhook_url)
    console.print(
        f"webhook block {created.block_name!r}; automations: {', '.join(created.automations)}"
    )


def generate_data(
    out: Annotated[Path, typer.Option(help="CSV file to write.")],
    rows: Annotated[int, typer.Option(help="Number of rows.")] = 20_000,
    seed: Annotated[int, typer.Option(help="Generator seed.")] = 0,
) -> None:
    """Write the built-in synthetic bank-churn data (Kaggle S4E1 schema) to a CSV file."""
    frame = generate_bank_churn(rows, seed=seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out, index=False)
    console.print(f"wrote {len(frame)} rows to {out}")
