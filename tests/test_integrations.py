"""The framework callbacks under the Trainers themselves (CPU): Lightning resumes (same arguments, changed ones,
the callback first added at resume, a state under neve 0.1's key, checkpoints at train-epoch and validation
end), and the HF Trainer's own logs and its callback state (loaded with weights_only=True)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import neve

# ------------------------------------------------------------------------------------------------ Lightning

pl = pytest.importorskip("lightning.pytorch")
from neve.integrations.lightning import STATE_KEY, NeVeCallback  # noqa: E402

NEVE = {"alpha": 0.5, "patience": 0, "epsilon": 1e-6, "batch_size": 8}


def data() -> DataLoader:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(128, 6, generator=generator)
    y = (x[:, 0] > 0).long() + (x[:, 1] > x[:, 2]).long()
    return DataLoader(TensorDataset(x, y), batch_size=32)


class Classifier(pl.LightningModule):
    def __init__(self, validate: bool = False) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3))
        self.validate = validate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return nn.functional.cross_entropy(self(x), y)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", nn.functional.cross_entropy(self(x), y))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.3)


class Recorder(pl.Callback):
    """Each NeVe decision taken, as (measurement, velocity, lr, stop), in the order taken."""

    def __init__(self, neve_callback: NeVeCallback) -> None:
        self.neve_callback, self.seen, self.decisions = neve_callback, None, []

    def _record(self) -> None:
        last = self.neve_callback.last
        if last is not None and last is not self.seen:
            self.seen = last
            self.decisions.append((last.epoch, last.model_velocity, last.lr, last.stop))

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._record()  # a catch-up measurement taken at train start

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._record()


def fit(epochs: int, out: Path, *, neve_options: dict | None = None, ckpt_path: Path | None = None,
        validate: bool = False, save_at: str = "train") -> tuple[pl.Trainer, NeVeCallback | None, list]:
    """``epochs`` epochs (resuming from ``ckpt_path``), a checkpoint per epoch in ``out`` saved at train-epoch
    end or (``save_at="validation"``, with a validation loop) at validation end, before NeVe's epoch-end step."""
    neve_callback = None if neve_options is None else NeVeCallback(neve.gaussian_aux(16, (6,)), **neve_options)
    checkpoint = pl.callbacks.ModelCheckpoint(dirpath=out, filename="{epoch}", save_top_k=-1,
                                              save_on_train_epoch_end=save_at == "train")
    callbacks = [checkpoint] if neve_callback is None else [neve_callback, Recorder(neve_callback), checkpoint]
    trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=False, callbacks=callbacks,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                         limit_val_batches=1 if validate else 0)
    model = Classifier(validate)
    trainer.fit(model, data(), data() if validate else None, ckpt_path=ckpt_path)
    return trainer, neve_callback, callbacks[1].decisions if neve_callback else []


@pytest.mark.parametrize("save_at", ["train", "validation"])
def test_lightning_resume_with_the_same_arguments_takes_the_uninterrupted_decisions(tmp_path, save_at):
    validate = save_at == "validation"
    _, _, straight = fit(6, tmp_path / "straight", neve_options=NEVE, validate=validate, save_at=save_at)
    assert any(lr != straight[0][2] for _, _, lr, _ in straight)  # cuts happened: a real comparison
    _, _, first = fit(6, tmp_path / "resumed", neve_options=NEVE, validate=validate, save_at=save_at)
    _, _, resumed = fit(6, tmp_path / "again", neve_options=NEVE, validate=validate, save_at=save_at,
                        ckpt_path=tmp_path / "resumed" / "epoch=2.ckpt")
    # a checkpoint saved at validation end lacks that epoch's measurement: taken once, at train start
    assert [d[0] for d in resumed] == ([3, 4, 5, 6] if validate else [4, 5, 6])
    assert resumed == straight[len(straight) - len(resumed):]
    assert first == straight


def test_lightning_resume_with_changed_arguments_restores_the_state_and_uses_the_new_ones(tmp_path):
    _, _, straight = fit(5, tmp_path / "straight", neve_options=NEVE)
    changed = {**NEVE, "patience": 3, "epsilon": 1e-5}
    with pytest.warns(UserWarning, match=r"changed arguments \(patience 0 -> 3, epsilon 1e-06 -> 1e-05\)"):
        trainer, callback, resumed = fit(5, tmp_path / "again", neve_options=changed,
                                         ckpt_path=tmp_path / "straight" / "epoch=2.ckpt")
    assert [d[0] for d in resumed] == [4, 5]  # the measurements go on from the checkpoint's
    assert [d[1] for d in resumed] == pytest.approx([d[1] for d in straight[3:]])  # the same velocities
    assert callback.neve.rule.plateau.patience == 3 and callback.neve.rule.epsilon == 1e-5
    assert trainer.current_epoch == 5 and not any(d[3] for d in resumed)


def test_lightning_callback_first_added_at_resume_starts_afresh_from_the_resumed_weights(tmp_path):
    fit(2, tmp_path / "plain")  # no NeVe: the checkpoint holds no NeVe state
    trainer, callback, resumed = fit(5, tmp_path / "again", neve_options={**NEVE, "epsilon": 1e-3},
                                     ckpt_path=tmp_path / "plain" / "epoch=1.ckpt")
    assert trainer.current_epoch == 5  # trained on: no catch-up measurement of unchanged weights (V = 0, stop)
    assert [d[0] for d in resumed] == [1, 2, 3] and all(d[1] > 1e-3 and not d[3] for d in resumed)


def test_lightning_finds_a_state_saved_under_the_0_1_key(tmp_path):
    _, _, straight = fit(5, tmp_path / "straight", neve_options=NEVE)
    path = tmp_path / "straight" / "epoch=2.ckpt"
    checkpoint = torch.load(path, weights_only=False)
    legacy = STATE_KEY + "{'alpha': 0.5, 'patience': 0, 'epsilon': 1e-06, 'mu': 0.5, 'stop': True, ...}"
    checkpoint["callbacks"][legacy] = checkpoint["callbacks"].pop(STATE_KEY)
    torch.save(checkpoint, tmp_path / "legacy.ckpt")
    _, _, resumed = fit(5, tmp_path / "again", neve_options=NEVE, ckpt_path=tmp_path / "legacy.ckpt")
    assert resumed == straight[3:]


def test_lightning_resume_with_other_modules_says_what_to_change(tmp_path):
    fit(3, tmp_path / "straight", neve_options=NEVE)
    with pytest.raises(ValueError, match="another layer selection.*modules="):
        fit(5, tmp_path / "again", neve_options={**NEVE, "modules": ["net.2"]},
            ckpt_path=tmp_path / "straight" / "epoch=1.ckpt")


# ----------------------------------------------------------------------------------------- HF Trainer

transformers = pytest.importorskip("transformers")
from neve.integrations.hf import STATE_FILE, NeVeTrainerCallback  # noqa: E402


class TokenClassifier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(32, 8)
        self.head = nn.Linear(8, 2)

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        logits = self.head(self.embed(input_ids).mean(1))
        if labels is None:  # NeVe runs the model on token ids alone
            return {"logits": logits}
        return {"loss": nn.functional.cross_entropy(logits, labels), "logits": logits}


class Tokens(torch.utils.data.Dataset):
    def __init__(self) -> None:
        self.ids = torch.randint(0, 32, (64, 6), generator=torch.Generator().manual_seed(0))
        self.labels = (self.ids[:, 0] < 16).long()

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "labels": self.labels[i]}


def hf_trainer(out: Path, epochs: int = 3) -> transformers.Trainer:
    args = transformers.TrainingArguments(output_dir=str(out), num_train_epochs=epochs, per_device_train_batch_size=16,
                                          learning_rate=0.05, logging_strategy="epoch", save_strategy="no",
                                          report_to=[], use_cpu=True, disable_tqdm=True, seed=0)
    return transformers.Trainer(model=TokenClassifier(), args=args, train_dataset=Tokens())


def own_entries(history: list[dict]) -> list[dict]:
    """The entries the Trainer writes itself (NeVe's are the ones with neve/ keys)."""
    return [entry for entry in history if not any(key.startswith("neve/") for key in entry)]


def test_hf_attach_keeps_every_log_the_trainer_writes_without_it(tmp_path):
    plain = hf_trainer(tmp_path / "plain")
    plain.train()
    with_neve = hf_trainer(tmp_path / "neve")
    callback = NeVeTrainerCallback(neve.token_aux(16, 6, vocab_size=32), patience=100, stop=False).attach(with_neve)
    with_neve.train()
    expected = own_entries(plain.state.log_history)
    assert sum("loss" in entry for entry in expected) == 3  # logging_strategy="epoch": one entry per epoch
    got = own_entries(with_neve.state.log_history)
    assert [sorted(entry) for entry in got] == [sorted(entry) for entry in expected]
    for entry, reference in zip(got, expected, strict=True):  # no cut (patience 100): the same training
        for key in ("loss", "grad_norm", "learning_rate", "epoch"):
            if key in reference:
                assert entry[key] == pytest.approx(reference[key], rel=1e-6), key
    assert len(callback.decisions) == 3
    assert sum("neve/velocity" in entry for entry in with_neve.state.log_history) == 3


def begin(callback: NeVeTrainerCallback, out: Path, global_step: int) -> None:
    """The Trainer's on_train_begin of a run resumed at ``global_step`` from ``out/checkpoint-<step>``."""
    model = TokenClassifier()
    args = transformers.TrainingArguments(output_dir=str(out), report_to=[], use_cpu=True)
    state = transformers.TrainerState(global_step=global_step)
    callback.on_train_begin(args, state, transformers.TrainerControl(), model=model,
                            optimizer=torch.optim.SGD(model.parameters(), lr=0.1), lr_scheduler=None)


class Payload:
    """What a planted checkpoint file could hold: unpickling it runs code (here: writes a file)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.write_text, (self.marker, "the payload ran"))


def test_hf_resume_does_not_unpickle_a_planted_state_file(tmp_path):
    folder = tmp_path / "checkpoint-5"
    folder.mkdir()
    marker = tmp_path / "payload-ran"
    torch.save({"rule": Payload(marker), "monitor": {}}, folder / STATE_FILE)  # a checkpoint file, as torch writes
    with pytest.raises(ValueError, match="not a NeVe state this callback wrote"):
        begin(NeVeTrainerCallback(neve.token_aux(8, 6, vocab_size=32)), tmp_path, global_step=5)
    assert not marker.exists()
    torch.load(folder / STATE_FILE, weights_only=False)  # the file really was a payload: a plain load runs it
    assert marker.read_text() == "the payload ran"


def test_hf_resume_with_changed_arguments_restores_the_state_and_uses_the_new_ones(tmp_path):
    callback = NeVeTrainerCallback(neve.token_aux(8, 6, vocab_size=32), patience=2)
    begin(callback, tmp_path, global_step=0)
    with torch.no_grad():
        callback.neve.monitor.model.head.weight.mul_(1.5)  # an epoch of "training"
    callback.neve.step()
    os.makedirs(tmp_path / "checkpoint-4")
    torch.save(callback.neve.state_dict(), tmp_path / "checkpoint-4" / STATE_FILE)
    resumed = NeVeTrainerCallback(neve.token_aux(8, 6, vocab_size=32), patience=5)
    with pytest.warns(UserWarning, match=r"changed arguments \(patience 2 -> 5\)"):
        begin(resumed, tmp_path, global_step=4)
    assert resumed.neve.monitor.epoch == 1 and resumed.neve.rule.plateau.patience == 5
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        begin(NeVeTrainerCallback(neve.token_aux(8, 6, vocab_size=32), patience=2), tmp_path, global_step=4)
