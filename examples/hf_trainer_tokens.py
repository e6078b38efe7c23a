"""NeVe in the Hugging Face Trainer: a tiny BERT built from a config (no download), random-token aux set.

    python examples/hf_trainer_tokens.py                              # one process
    torchrun --nproc_per_node 2 examples/hf_trainer_tokens.py         # DDP (gloo on CPU)

Velocity, velocity change and lr go through trainer.log: every report_to integration (W&B, TensorBoard) and
<out>/trainer_state.json's log_history; rank 0 also writes the decisions to <out>/decisions.json.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from torch.utils.data import Dataset, SequentialSampler  # noqa: E402
from transformers import (  # noqa: E402
    BertConfig,
    BertForSequenceClassification,
    Trainer,
    TrainingArguments,
    get_linear_schedule_with_warmup,
)

import neve  # noqa: E402
from neve.integrations.hf import NeVeTrainerCallback  # noqa: E402

SEED, VOCAB, SEQ_LEN, SAMPLES, GLOBAL_BATCH, LR = 0, 64, 8, 256, 32, 0.5
NEVE = {"alpha": 0.5, "patience": 0, "epsilon": 0.05}


def make_model(seed: int = SEED) -> torch.nn.Module:
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=SEQ_LEN, num_labels=2,
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return BertForSequenceClassification(config)


class Tokens(Dataset):
    """Random sequences labelled by whether token 0 appears in the first half of the vocabulary."""

    def __init__(self) -> None:
        generator = torch.Generator().manual_seed(SEED)
        self.ids = torch.randint(0, VOCAB, (SAMPLES, SEQ_LEN), generator=generator)
        self.labels = (self.ids[:, 0] < VOCAB // 2).long()

    def __len__(self) -> int:
        return SAMPLES

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "labels": self.labels[i]}


class InOrderTrainer(Trainer):
    """Samples in order, so tests/test_examples.py can compare with a plain loop; drop it in your own runs."""

    def _get_train_sampler(self, *args, **kwargs):
        return SequentialSampler(self.train_dataset)


def make_aux() -> torch.Tensor:
    return neve.token_aux(n=64, seq_len=SEQ_LEN, vocab_size=VOCAB, seed=1)


def train(out: Path, epochs: int = 8) -> dict:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    # average_tokens_across_devices=False: the default rescales the loss under DDP, which a plain loop
    # (tests/test_examples.py) does not; NeVe works either way.
    args = TrainingArguments(output_dir=str(out), per_device_train_batch_size=GLOBAL_BATCH // world,
                             num_train_epochs=epochs, learning_rate=LR, optim="sgd", weight_decay=0.0,
                             max_grad_norm=0.0, save_strategy="no", logging_strategy="no", report_to=[],
                             use_cpu=True, seed=SEED, average_tokens_across_devices=False, disable_tqdm=True,
                             ddp_backend="gloo" if world > 1 else None)
    trainer = InOrderTrainer(model=make_model(), args=args, train_dataset=Tokens())
    callback = NeVeTrainerCallback(make_aux(), **NEVE).attach(trainer)
    trainer.train()
    decisions = {"lr": [d.lr for d in callback.decisions], "stop_epoch": callback.stop_epoch,
                 "velocity": [d.model_velocity for d in callback.decisions]}
    if trainer.is_world_process_zero():
        (out / "decisions.json").write_text(json.dumps(decisions))
    if world > 1:
        # Every rank waits here, with the GIL released, so gloo's worker threads finish freeing the tensors of
        # the Trainer's last all_gather before the interpreter exits. Without this, about 1 run in 30 aborted
        # at exit with "terminate called without an active exception" (docs/integrations.md).
        trainer.accelerator.wait_for_everyone()
        trainer.accelerator.end_training()
    return decisions


def plain_loop(epochs: int = 8) -> dict:
    """The same training by hand with neve.NeVe (and the Trainer's linear schedule): the decisions to match."""
    model, data = make_model(), Tokens()
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    steps = epochs * (SAMPLES // GLOBAL_BATCH)
    scheduler = get_linear_schedule_with_warmup(optimizer, 0, steps)
    controller = neve.NeVe(model, optimizer, make_aux(), scheduler=scheduler, **NEVE)
    lrs, velocities, stop_epoch = [], [], None
    for epoch in range(1, epochs + 1):
        model.train()
        for start in range(0, SAMPLES, GLOBAL_BATCH):
            rows = slice(start, start + GLOBAL_BATCH)
            batch = {"input_ids": data.ids[rows], "labels": data.labels[rows]}
            model(**batch).loss.backward()
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
        decision = controller.step()
        lrs.append(decision.lr)
        velocities.append(decision.model_velocity)
        if decision.stop:
            stop_epoch = epoch
            break
    return {"lr": lrs, "stop_epoch": stop_epoch, "velocity": velocities}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--out", type=Path, default=Path("runs/hf_trainer_tokens"))
    cli = parser.parse_args()
    result = train(cli.out, cli.epochs)
    print("lr per epoch:", result["lr"], "stop epoch:", result["stop_epoch"])
