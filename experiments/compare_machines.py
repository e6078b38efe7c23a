"""One experiment trained on two machines: does each cell agree, and what do both together say?

In fp32 a run is bit-identical on one machine but not across CPUs (other kernel paths, and SGD amplifies the
last-bit differences), so the same seeds trained on a second machine are, for the accuracies, a second sample
of the same distribution. This reads the two ``_runs.csv`` files that ``python -m experiments.aggregate NAME``
wrote (one with ``--runs-dir`` / ``--results-dir`` pointing at the second machine's runs) and gives, per cell:
each machine's mean ± std, a two-sided Welch test of one machine against the other (a small p would say the
machine, not the seed, moves the number), and both machines pooled, with its Welch test against the block's
reference cell pooled the same way (the Baseline, or the block's first cell).

Only finished runs count, with each run's reported number (``acc``), as in the tables.

    python -m experiments.compare_machines results/mnist1d-table2_runs.csv \\
        results/second-cpu/mnist1d-table2_runs.csv --names "AMD EPYC" "Intel Xeon" \\
        --out results/second-cpu/mnist1d-table2_machines.csv
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from experiments.aggregate import block_reference, describe, welch, write_csv
from experiments.results import FINISHED, ResultsError, mean_std, p_value, read_csv

COLUMNS = ("block", "cell", "seed", "state", "acc")


def finished_runs(path: Path) -> pd.DataFrame:
    """The finished runs of a ``_runs.csv``, or a :class:`ResultsError` that says how to rebuild the file."""
    runs = read_csv(Path(path), COLUMNS, Path(path).name.removesuffix("_runs.csv"))
    return runs[runs["state"] == FINISHED]


def compare(first: pd.DataFrame, second: pd.DataFrame) -> pd.DataFrame:
    """Per (block, cell), in the first file's order: each machine's n / mean / std, Welch of the first against
    the second, and the pooled runs' n / mean / std with Welch against the block's reference cell pooled.
    Only the blocks both machines trained count (a second machine may train part of an experiment)."""
    rows = []
    shared = set(second["block"])
    for block in [b for b in dict.fromkeys(first["block"]) if b in shared]:
        cells = list(dict.fromkeys(first.loc[first["block"] == block, "cell"]))
        reference = block_reference(cells)
        pooled_reference = accuracies(first, block, reference) + accuracies(second, block, reference)
        for cell in cells:
            a, b = accuracies(first, block, cell), accuracies(second, block, cell)
            pooled = a + b
            rows.append({
                "block": block, "cell": cell, "reference": reference,
                **_summary("first", a), **_summary("second", b),
                "welch_machines_p": welch(a, b)[1],
                **_summary("pooled", pooled),
                "welch_pooled_p": welch(pooled, pooled_reference)[1] if cell != reference else float("nan"),
            })
    return pd.DataFrame(rows)


def accuracies(runs: pd.DataFrame, block: str, cell: str) -> list[float]:
    return runs.loc[(runs["block"] == block) & (runs["cell"] == cell), "acc"].astype(float).tolist()


def _summary(prefix: str, values: list[float]) -> dict[str, float]:
    """n, mean and sample std as the tables give them (:func:`experiments.aggregate.describe`), prefixed."""
    return {f"{prefix}_{key}": value for key, value in describe(values).items() if key in ("n", "mean", "std")}


def markdown(table: pd.DataFrame, names: Sequence[str]) -> str:
    """The comparison as a markdown table, one row per cell."""
    lines = [f"| block | cell | {names[0]} | {names[1]} | p ({names[0]} vs {names[1]}) | both pooled | "
             "p pooled vs reference |", "|---|---|---|---|---|---|---|"]
    for row in table.itertuples():
        lines.append(
            f"| {row.block} | {row.cell} | {mean_std(row.first_mean, row.first_std)} ({row.first_n}) "
            f"| {mean_std(row.second_mean, row.second_std)} ({row.second_n}) | {p_value(row.welch_machines_p)} "
            f"| {mean_std(row.pooled_mean, row.pooled_std)} ({row.pooled_n}) | {p_value(row.welch_pooled_p)} |")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m experiments.compare_machines", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("first", type=Path, help="the first machine's NAME_runs.csv")
    parser.add_argument("second", type=Path, help="the second machine's NAME_runs.csv (same experiment)")
    parser.add_argument("--names", nargs=2, default=("first", "second"), metavar=("FIRST", "SECOND"),
                        help="the two machines' names, for the table's header")
    parser.add_argument("--out", type=Path, help="also write the comparison as a CSV (atomically)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        table = compare(finished_runs(args.first), finished_runs(args.second))
    except ResultsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(markdown(table, args.names))
    if args.out:
        print(f"wrote {write_csv(table, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
