"""Label Wave (Yuan, Feng and Liu, ICLR 2024) as a method: early stopping without a validation set.

Each epoch counts the training samples whose predicted class -- taken from the training step's own forward
pass, as the trainer hands it to :meth:`observe_batch` -- differs from their prediction one epoch before.
The count falls while the model fits the clean labels and rises once it starts memorizing noisy ones; the
method stops after ``patience`` epochs without a new minimum and reports the model of the minimum.

The lr follows the recipe schedule, as the baseline's. Choices, said once:
- Epoch 1 has no previous prediction: its count is recorded as empty (None) and is no candidate minimum;
  the first count, and the first candidate, is epoch 2. (The NeVe authors' Label Wave script looks for the
  minimum from epoch 3 on -- its check is ``epoch > 1`` on a 0-based epoch; here epoch 2 is a candidate.)
- A new minimum is strictly lower than every earlier count (a tie is no improvement), and the stop comes
  when ``patience`` epochs in a row brought none, as in their script.
- With ``--stop mark`` the run goes on after the stop, but the kept model stays the one of the minimum
  before the stop: later minima are neither kept nor reported.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from experiments.methods.base import Decision, EpochResult, Stepper
from experiments.methods.baseline import Baseline
from experiments.methods.registry import register_method

NO_PREDICTION = -1


@register_method("labelwave", label="Label Wave", family="related")
class LabelWave(Baseline):
    """Recipe schedule; stop ``patience`` epochs after the minimum of the per-epoch prediction changes."""

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        #: Each training sample's predicted class at its last training step (NO_PREDICTION: never seen).
        self.predictions = torch.empty(0, dtype=torch.int64)
        # This epoch's tallies, kept on the device (no sync per batch): changed predictions, and samples
        # that had a prediction to compare with (none in epoch 1).
        self._changed = torch.zeros((), dtype=torch.int64)
        self._compared = torch.zeros((), dtype=torch.int64)
        self.best_count: int | None = None
        self.best_epoch: int | None = None
        self.epochs_since_best = 0
        self.stopped = False
        self.sized = False

    def start_training(self, num_train_samples: int) -> None:
        # Sized once, so observe_batch never has to read indices back from the GPU.
        self._grow(num_train_samples, self.predictions.device)
        self.sized = True

    def observe_batch(self, logits: Tensor, labels: Tensor, indices: Tensor) -> None:
        predicted = logits.argmax(1)
        if self.predictions.device != predicted.device:
            self._grow(len(self.predictions), predicted.device)
        if not self.sized:  # used outside the trainer: grow to the largest index seen (a GPU sync per batch)
            needed = int(indices.max()) + 1 if indices.numel() else 0
            if len(self.predictions) < needed:
                self._grow(needed, predicted.device)
        previous = self.predictions[indices]
        seen_before = previous != NO_PREDICTION
        self._changed += (seen_before & (previous != predicted)).sum()
        self._compared += seen_before.sum()
        self.predictions[indices] = predicted

    def _grow(self, size: int, device: torch.device) -> None:
        size = max(size, len(self.predictions))
        grown = torch.full((size,), NO_PREDICTION, dtype=torch.int64, device=device)
        grown[: len(self.predictions)] = self.predictions.to(device)
        self.predictions = grown
        self._changed, self._compared = self._changed.to(device), self._compared.to(device)

    def end_epoch(self, result: EpochResult, stepper: Stepper) -> Decision:
        schedule = super().end_epoch(result, stepper)
        count = int(self._changed) if int(self._compared) else None
        self._changed.zero_()
        self._compared.zero_()
        new_minimum = False
        if count is not None and not self.stopped:
            if self.best_count is None or count < self.best_count:
                self.best_count, self.best_epoch, self.epochs_since_best = count, result.epoch, 0
                new_minimum = True
            else:
                self.epochs_since_best += 1
            self.stopped = self.epochs_since_best >= self.config.patience
        return Decision(lr_reduced=schedule.lr_reduced, stop=self.stopped, keep_weights=new_minimum,
                        extra={"prediction_changes": count})

    def state_dict(self) -> dict[str, Any]:
        return {"predictions": self.predictions.cpu().clone(), "best_count": self.best_count,
                "best_epoch": self.best_epoch, "epochs_since_best": self.epochs_since_best,
                "stopped": self.stopped}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.sized and len(state["predictions"]) != len(self.predictions):
            raise ValueError(f"this Label Wave state tracks {len(state['predictions'])} training samples, the "
                             f"training set has {len(self.predictions)}; resume with the same data and --holdout")
        self.predictions = state["predictions"].clone()
        self._changed = torch.zeros((), dtype=torch.int64, device=self.predictions.device)
        self._compared = torch.zeros((), dtype=torch.int64, device=self.predictions.device)
        self.best_count, self.best_epoch = state["best_count"], state["best_epoch"]
        self.epochs_since_best, self.stopped = int(state["epochs_since_best"]), bool(state["stopped"])
