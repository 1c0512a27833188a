"""Plain steps of the sweep, called directly (no Prefect)."""

from __future__ import annotations

from churnml.config import SweepConfig
from flows.sweep import steps
from tracking.registry import RegisteredVersion


def version(number: str) -> RegisteredVersion:
    return RegisteredVersion(
        name="bank-churn-classifier",
        version=number,
        model_uri=f"models:/bank-churn-classifier/{number}",
        created=True,
        aliases=("champion",),
    )


def test_two_stores_on_one_checkout_never_share_a_skops_file():
    # Version 1 exists in every store; each sweep run id is its own.
    config = SweepConfig()
    first = steps.skops_path(config, version("1"), "a" * 32)
    second = steps.skops_path(config, version("1"), "b" * 32)
    assert first != second
    assert first.parent == second.parent and first.suffix == ".skops"
    assert "v1" in first.name and "a" * 32 in first.name


def test_an_explicit_skops_path_is_used_as_given(tmp_path):
    config = SweepConfig(skops_path=str(tmp_path / "model.skops"))
    assert steps.skops_path(config, version("3"), "c" * 32) == tmp_path / "model.skops"
