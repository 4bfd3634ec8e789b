"""End to end at GEO scale: preprocess, CAE selection, linear imputation, evaluation.

Usage::

    python benchmarks/end_to_end.py --input SIM.h5ad --workdir /tmp/geo-e2e [--epochs 2]
                                    [--method cae|ipcae] [--max-steps-per-epoch N] [--record]

Each stage runs as the ``genesel`` CLI under ``/usr/bin/time -v`` (wall time, peak RSS).
The CAE runs ``--epochs`` epochs (K = 943, D = 10,463, batch 256); on a machine that
cannot reach convergence in the time available, the table reports the measured time per
epoch and the extrapolation to the epochs the CAE needs (``--converge-epochs``), marked as
such; ``--max-steps-per-epoch`` shortens each epoch further (peak memory does not depend on
it: the loaders and the model are the same). ``--input`` is a simulated compendium from
``genesel simulate``.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from recording import markdown_table, record  # noqa: E402
from timing import measure  # noqa: E402

from genesel.store import Store  # noqa: E402

GENESEL = [sys.executable, "-m", "genesel.cli.main", "-q"]
#: The select CLI's default minibatch size.
BATCH_SIZE = 256


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--input", type=Path, required=True)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/genesel-e2e"))
    parser.add_argument("--epochs", type=int, default=2, help="CAE epochs actually run")
    parser.add_argument(
        "--converge-epochs",
        type=int,
        default=None,
        help="epochs to extrapolate to (default: run to convergence)",
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--method", default="cae")
    parser.add_argument(
        "--max-steps-per-epoch", type=int, default=None, help="cap the steps of each epoch"
    )
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args()
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    store, panel, model = work / "store.h5ad", work / "panel", work / "linear"
    log = str(work / "log.txt")
    stages = []
    if not store.exists():
        stages.append(
            (
                "preprocess",
                measure([*GENESEL, "preprocess", str(args.input), "--out", str(store)], log=log),
            )
        )
    select = [
        *GENESEL,
        "select",
        "--data",
        str(store),
        "--method",
        args.method,
        "--n-genes",
        "943",
        "--out",
        str(panel),
    ]
    select += [
        "--epochs",
        str(args.epochs),
        "--device",
        args.device,
        "--param",
        'anneal="epoch"',
        "--min-steps",
        "0",
        "--no-stop-when-converged",
    ]
    label = f"{args.method} select ({args.epochs} epochs)"
    if args.max_steps_per_epoch:
        select += ["--max-steps-per-epoch", str(args.max_steps_per_epoch)]
        label = f"{args.method} select ({args.epochs} epochs of {args.max_steps_per_epoch} steps)"
    stages.append((label, measure(select, log=log)))
    stages.append(
        (
            "linear fit",
            measure(
                [
                    *GENESEL,
                    "impute",
                    "fit",
                    "--data",
                    str(store),
                    "--panel",
                    str(panel / "panel.tsv"),
                    "--decoder",
                    "linear",
                    "--out",
                    str(model),
                ],
                log=log,
            ),
        )
    )
    stages.append(
        (
            "evaluate (test)",
            measure(
                [
                    *GENESEL,
                    "evaluate",
                    "--data",
                    str(store),
                    "--model",
                    str(model),
                    "--split",
                    "test",
                    "--out",
                    str(work / "metrics.json"),
                ],
                log=log,
            ),
        )
    )
    history = pd.read_csv(panel / "history.tsv", sep="\t")
    rows = [
        {
            "stage": name,
            "wall (s)": round(m.seconds, 1),
            "peak RSS (GiB)": round(m.peak_rss_gib, 2),
        }
        for name, m in stages
    ]
    steps = float(history["steps_per_second"].mean())
    with Store.open(store) as opened:
        full_epoch_steps = math.ceil(opened.split_indices("train").size / BATCH_SIZE)
    # a capped epoch is timed per step; a full epoch also pays its validation pass
    per_epoch = (
        full_epoch_steps / steps if args.max_steps_per_epoch else float(history["seconds"].mean())
    )
    notes = f"{args.method}: {steps:.2f} steps/s (batch {BATCH_SIZE}), {per_epoch:.1f} s per full epoch of {full_epoch_steps} steps"
    notes += " (extrapolated from the capped epochs)." if args.max_steps_per_epoch else "."
    if args.converge_epochs:
        notes += f" Extrapolated to {args.converge_epochs} epochs: {per_epoch * args.converge_epochs / 60:.0f} min (extrapolation, not measured)."
    table = markdown_table(rows)
    print(table)
    print(notes)
    if args.record:
        record(f"End to end at GEO scale ({args.method})", table, notes=notes)


if __name__ == "__main__":
    main()
