"""One training run of the paper from the command line; rerunning the same command resumes it.

Examples:
    python -m experiments.train --dataset cifar10 --model resnet32 --method baseline      # Table II row
    python -m experiments.train --dataset cifar100 --method neve --seed 3
    python -m experiments.train --dataset cifar10 --method vloss --holdout 0.1
    python -m experiments.train --dataset digits --model resnet8 --method neve --epochs 30 --wandb offline
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import typing
from collections.abc import Callable, Sequence
from typing import Any

from experiments.run_folder import RunFolderBusy, disk_error_text
from experiments.training.config import Option, RunConfig, finite_float, flag_of
from experiments.training.records import forget_inherited_wandb_service

#: How an option's text becomes a field of each plain type (other types say so in their :class:`Option`).
PARSERS: dict[type, Callable[[str], Any]] = {int: int, float: finite_float, str: str}


def build_parser() -> argparse.ArgumentParser:
    """Every :class:`RunConfig` field that carries an :class:`Option`, in the order and sections it declares, and
    ``--lock-wait``. An option left out keeps the field's default (argparse stores nothing for it)."""
    parser = argparse.ArgumentParser(
        prog="python -m experiments.train", description=__doc__, argument_default=argparse.SUPPRESS,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    group: Any = parser
    types = typing.get_type_hints(RunConfig)
    for spec in dataclasses.fields(RunConfig):
        how: Option | None = spec.metadata.get("option")
        if how is None:
            continue
        if how.section:
            group = parser.add_argument_group(how.section)
        group.add_argument(flag_of(spec), dest=spec.name, **_argument(spec, how, types[spec.name]))
    writer = parser.add_argument_group("one writer per run folder")
    writer.add_argument("--lock-wait", type=_cli(finite_float), default=0.0, metavar="SECONDS",
                        help="when another process trains this run folder, wait up to SECONDS for it to end "
                             "(then resume or skip the run as it left it) instead of refusing at once")
    return parser


def _argument(spec: dataclasses.Field, how: Option, kind: Any) -> dict[str, Any]:
    """argparse's keywords for one field: its parser, choices, flag style, and help ending with its default."""
    default = spec.default_factory() if spec.default_factory is not dataclasses.MISSING else spec.default
    plain = [t for t in typing.get_args(kind) if t is not type(None)] or [kind]
    if plain == [bool]:
        if default is None:
            return {"action": argparse.BooleanOptionalAction, "help": how.help}
        return {"action": "store_false" if default else "store_true", "help": how.help}
    parse = how.parse or PARSERS[plain[0]]
    keywords: dict[str, Any] = {"type": parse if parse in (int, str) else _cli(parse)}
    if how.metavar:
        keywords["metavar"] = how.metavar
    if isinstance(default, dict):
        keywords["action"] = "append"  # KEY=VALUE pairs, gathered into the dict by config_from_args
    if how.choices:
        keywords["choices"] = how.allowed()
    # None means "decided later" (the recipe, --fidelity, ...): each such option's help says by what.
    keywords["help"] = how.help if default in (None, {}, ()) else f"{how.help} (default: {default})"
    return keywords


def _cli(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """``parse`` with its ValueError shown by argparse as the reason ("argument --lr: 'nan' is not a finite
    number"), not as "invalid value"."""
    def parse_option(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from error

    parse_option.__name__ = getattr(parse, "__name__", "value")
    return parse_option


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """The :class:`RunConfig` of the options given; the rest keep their defaults."""
    names = {spec.name for spec in dataclasses.fields(RunConfig)}
    values = {name: value for name, value in vars(args).items() if name in names}
    if "data_options" in values:
        values["data_options"] = dict(values["data_options"])
    return RunConfig(**values)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    from experiments.training.trainer import CheckpointError, train

    forget_inherited_wandb_service()

    try:
        config = config_from_args(args).resolved()
        summary = train(config, lock_wait_s=args.lock_wait)
    except (ValueError, CheckpointError, FileNotFoundError, RunFolderBusy) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # a full disk, a read-only or foreign folder: one line, no traceback
        text = disk_error_text(error)
        if text is None:
            raise
        print(f"error: {text}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2, allow_nan=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
