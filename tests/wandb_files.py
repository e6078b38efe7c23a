"""Reading an offline W&B run back from its files, for tests that check what a run logged."""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path


def read_wandb_file(path: Path) -> list:
    """The records of a ``.wandb`` file, parsed with wandb's own protobuf messages.

    Recent wandb has no Python reader for its files (the Go core writes them), so this undoes the
    framing by hand: a 7-byte ":W&B" header, then LevelDB-log blocks of 32 KiB whose chunks carry a
    7-byte header (crc32c, length, type 1 full / 2 first / 3 middle / 4 last).
    """
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B" and struct.unpack("<HB", data[4:7]) == (0xBEE1, 0)
    chunks, pending, pos, block = [], b"", 7, 32768
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if kind == 0:
            break
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind == 1:
            chunks.append(chunk)
        elif kind == 2:
            pending = chunk
        elif kind == 3:
            pending += chunk
        else:
            chunks.append(pending + chunk)
    messages = []
    for chunk in chunks:
        message = wandb_internal_pb2.Record()
        message.ParseFromString(chunk)
        messages.append(message)
    return messages


def complete_records(path: Path, timeout: float = 30.0) -> list:
    """The file's records once its writer has flushed the run's end (the ``exit`` record): W&B's core process
    can still be writing the file for a moment after ``run.finish()`` returns."""
    deadline = time.monotonic() + timeout
    while True:
        messages = read_wandb_file(path)
        if any(m.WhichOneof("record_type") == "exit" for m in messages) or time.monotonic() > deadline:
            return messages
        time.sleep(0.1)


def item_key(item) -> str:
    return item.key or ".".join(item.nested_key)


def offline_run(run_dir: Path, wandb_id: str, attempt: int | None = None) -> dict:
    """Config, history and final summary of the offline W&B run ``wandb_id`` under ``run_dir/wandb``.

    A resumed run has one folder per attempt (oldest first); ``attempt`` picks one, else there must be one."""
    folders = sorted((run_dir / "wandb").glob(f"offline-run-*-{wandb_id}*"))
    (folder,) = folders if attempt is None else [folders[attempt]]
    (wandb_file,) = folder.glob("*.wandb")
    config, history, summary, group = {}, [], {}, None
    for message in complete_records(wandb_file):
        kind = message.WhichOneof("record_type")
        if kind == "run":
            group = message.run.run_group or group
            config.update({item_key(i): json.loads(i.value_json) for i in message.run.config.update})
        elif kind == "config":
            config.update({item_key(i): json.loads(i.value_json) for i in message.config.update})
        elif kind == "history":
            history.append({item_key(i): json.loads(i.value_json) for i in message.history.item})
        elif kind == "summary":
            summary.update({item_key(i): json.loads(i.value_json) for i in message.summary.update})
    return {"config": config, "history": history, "summary": summary, "group": group}
