"""A finished run's summary, computed from its per-epoch records alone."""

from __future__ import annotations

import math
from typing import Any


def _first(records: list[dict[str, Any]], column: str) -> dict[str, Any] | None:
    return next((r for r in records if r.get(column)), None)


def _accuracy_at(record: dict[str, Any] | None) -> tuple[int | None, float | None]:
    return (record["epoch"], record["test_acc"]) if record else (None, None)


def summarize(records: list[dict[str, Any]], config: dict[str, Any]) -> dict[str, Any]:
    """Test accuracy at the end, at the stop epochs and at the best validation epoch; epochs; wall time."""
    if not records:
        raise ValueError("no epoch was recorded; nothing to summarize")
    last = records[-1]
    summary: dict[str, Any] = {
        "finished": True,
        "method": config.get("method"),
        "epochs_run": last["epoch"],
        "final_test_acc": last["test_acc"],
        "wall_seconds": sum(r["seconds"] for r in records),
        "diverged": not math.isfinite(last["train_loss"]),
        # True: every test accuracy here was measured on augmented test images (the authors' Label Wave loader).
        "test_augmentation": bool(config.get("test_augmentation")),
    }
    summary["stop_epoch"], summary["test_acc_at_stop"] = _accuracy_at(_first(records, "method_stop"))
    summary["neve_stop_epoch"], summary["test_acc_at_neve_stop"] = _accuracy_at(_first(records, "neve_stop"))
    with_val = [r for r in records if r.get("val_loss") is not None]
    best_val = min(with_val, key=lambda r: r["val_loss"]) if with_val else None
    summary["best_val_epoch"], summary["test_acc_at_best_val"] = _accuracy_at(best_val)
    # The model a method reports (best validation loss, Label Wave minimum): the last epoch it kept.
    kept = next((r for r in reversed(records) if r.get("kept_weights")), None)
    summary["kept_epoch"], summary["test_acc_at_kept"] = _accuracy_at(kept)
    return summary
