"""One training run of the paper from the command line; rerunning the same command resumes it.

Examples:
    python -m experiments.train --dataset cifar10 --model resnet32 --method baseline      # Table II row
    python -m experiments.train --dataset cifar100 --method neve --seed 3
    python -m experiments.train --dataset cifar10 --method vloss --holdout 0.1
    python -m experiments.train --dataset digits --model resnet8 --method neve --epochs 30 --wandb offline
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

from experiments.methods import METHODS
from experiments.training.config import (
    AUX_KINDS,
    AUX_NOISES,
    FIDELITIES,
    PLATEAU_RULES,
    RESNET_VARIANTS,
    STOP_MODES,
    VELOCITY_FORMS,
    VELOCITY_SETS,
    WANDB_MODES,
    RunConfig,
)
from experiments.training.precision import PRECISIONS
from experiments.training.recipes import RECIPES
from experiments.training.records import forget_inherited_wandb_service


def _milestones(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"--milestones takes comma-separated epochs, e.g. 100,150; got {text}") \
            from error


def _data_option(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--data-option takes KEY=VALUE (e.g. seed=43), got {text!r}")
    return key.strip(), value.strip()


def _names(text: str) -> tuple[str, ...]:
    return tuple(part for part in text.split(",") if part)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.train", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    run = parser.add_argument_group("what to train")
    run.add_argument("--dataset", default="cifar10", choices=sorted({d for d, _ in RECIPES}))
    run.add_argument("--model", default="resnet32", help="resnet8/14/20/32/44/56, resnet50, swinv2_tiny; "
                     "for mnist1d: mnist1d_cnn, mnist1d_mlp, mnist1d_resnet")
    run.add_argument("--method", default="baseline", choices=sorted(METHODS),
                     help="baseline: recipe schedule; vloss: plateau + early stop on validation loss (needs "
                          "--holdout); neve: velocity-driven decay and stop; none: constant lr; ultimate: "
                          "hyper-SGD learns lr and momentum; labelwave: stop on prediction changes (paper: "
                          "with --label-noise 0.4); tuning-free optimizers (authors' settings, README): "
                          "schedulefree, prodigy, prodigy-cosine, dadapt, dadapt-multistep, dog")
    run.add_argument("--seed", type=int, default=0)

    recipe = parser.add_argument_group("recipe (defaults: the paper's preset for the dataset and model)")
    recipe.add_argument("--epochs", type=int, help="epoch budget (CIFAR: 250)")
    recipe.add_argument("--optimizer", choices=["sgd", "adam", "adamw"], help="swap the optimizer (Adam ablation)")
    recipe.add_argument("--lr", type=float, help="initial lr (SGD recipe 0.1; Adam 1e-3)")
    recipe.add_argument("--momentum", type=float)
    recipe.add_argument("--weight-decay", type=float)
    recipe.add_argument("--batch-size", type=int)
    recipe.add_argument("--image-size", type=int, help="model input size (ImageNet-100: 224; SwinV2: 256)")
    recipe.add_argument("--milestones", type=_milestones, help="baseline lr x0.1 after these epochs, e.g. 100,150")

    method = parser.add_argument_group("NeVe and the other methods")
    method.add_argument("--alpha", type=float, default=0.5, help="lr decay factor on a plateau, in (0, 1)")
    method.add_argument("--patience", type=int, default=10,
                        help="plateau patience delta of neve/vloss, and Label Wave's patience (paper: 5 or 10)")
    method.add_argument("--epsilon", type=float, default=1e-3, help="NeVe stops when velocity < epsilon")
    method.add_argument("--mu", type=float, default=0.5, help="velocity momentum mu of eq. 2, in [0, 1)")
    method.add_argument("--stop", default="halt", choices=STOP_MODES,
                        help="halt at the method's stop, or mark it and train the whole budget")
    method.add_argument("--stop-patience", type=int, help="vloss: epochs without a new best (default 2*patience)")

    fidelity = parser.add_argument_group(
        "fidelity: the paper's text or the authors' code (each option below defaults to what --fidelity sets)")
    fidelity.add_argument("--fidelity", default="paper", choices=FIDELITIES,
                          help="paper: follow the paper's text (default); code: reproduce what the authors' code "
                               "ran, the setting that produced the paper's tables")
    fidelity.add_argument("--velocity-form", choices=VELOCITY_FORMS,
                          help="paper: v = |(1 - rho) - mu v_prev| (eq. 2); signed: the authors' recursion without "
                               "the absolute value, |v| only when averaging")
    fidelity.add_argument("--aux-noise", choices=AUX_NOISES,
                          help="Gaussian aux images: normal = N(0, 1); uint8 = the authors' randn through "
                               "ToPILImage/ToTensor (x255, wrapped to uint8, /255: ~uniform in [0, 1])")
    fidelity.add_argument("--plateau-rule", choices=PLATEAU_RULES,
                          help="code: skip the plateau step when D == 0 exactly and any lr cut of 1e-8 or less "
                               "(torch's eps: the lr stops just above 1e-8); V.Loss gets the 1e-8 rule only")
    fidelity.add_argument("--resnet-variant", choices=RESNET_VARIANTS,
                          help="CIFAR ResNets: paper = option-A zero channels on both sides, Kaiming fan-in; "
                               "code = zero channels appended after the input's, Kaiming fan-out")
    fidelity.add_argument("--test-augmentation", action=argparse.BooleanOptionalAction, default=None,
                          help="evaluate the test set with the training augmentation (the authors' Label Wave "
                               "loader; default: only for labelwave under --fidelity code)")

    data = parser.add_argument_group("data")
    data.add_argument("--aux", default="gaussian",
                      help=f"aux set for velocity: {', '.join(AUX_KINDS)} or folder:PATH (default gaussian)")
    data.add_argument("--aux-size", type=int, default=100, help="images in the aux set")
    data.add_argument("--aux-batch-size", type=int, default=16,
                      help="aux images per pass when measuring velocity: memory grows with it, time per "
                           "measurement shrinks (on a GPU with a small model, 100 is ~4x faster)")
    data.add_argument("--velocity-sets", type=_names, default=(),
                      help=f"also record velocity on these real sets each epoch ({','.join(VELOCITY_SETS)}; Fig. 7)")
    data.add_argument("--holdout", type=float, default=0.0,
                      help="training images held out for validation: a fraction (0.1) or a count")
    data.add_argument("--label-noise", type=float, default=0.0,
                      help="symmetric label-noise rate on the training labels (Label Wave setting: 0.4)")
    data.add_argument("--data-option", dest="data_options", type=_data_option, action="append", metavar="KEY=VALUE",
                      help="a generated dataset's generator argument, repeatable; mnist1d: num_samples, seed "
                           "(42 is the published set; another seed draws a tuning set), shuffle_seq")
    data.add_argument("--train-order", default="shuffle", choices=("shuffle", "fixed"),
                      help="shuffle: a new permutation every epoch; fixed: walk the training set in its stored "
                           "order every epoch (MNIST-1D's published train.py, mnist1d-published)")
    data.add_argument("--data-root", default="data", help="where datasets are (downloaded if missing)")
    data.add_argument("--no-download", dest="download", action="store_false",
                      help="fail instead of downloading a missing dataset")
    data.add_argument("--num-workers", type=int, default=4, help="DataLoader workers (ImageNet-100)")

    where = parser.add_argument_group("where and how")
    where.add_argument("--out", help="run folder (default runs/<dataset>-<model>-<method>[-...]-s<seed>-<config "
                                     "hash>: the same config is always the same folder)")
    where.add_argument("--wandb", default="auto", choices=WANDB_MODES,
                       help="auto: online when logged in to W&B, offline otherwise")
    where.add_argument("--wandb-group", help="W&B group of the run (sweeps use the experiment's name)")
    where.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    where.add_argument("--precision", default="auto", choices=PRECISIONS,
                       help="training precision: auto = bf16 autocast on GPUs and on CPUs with native bf16 "
                            "(AVX512-BF16/AMX), fp32 elsewhere; velocity is always measured in fp32")
    where.add_argument("--threads", type=int, help="CPU threads (default: torch's, one per core); 1 is fastest for "
                       "MNIST-1D's tiny models when several runs share the machine")
    where.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    return parser


def config_from_args(args: argparse.Namespace) -> RunConfig:
    values = {k: v for k, v in vars(args).items() if v is not None}
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
        summary = train(config)
    except (ValueError, CheckpointError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
