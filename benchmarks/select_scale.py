"""Every selection method at GEO scale, data on disk: wall time and peak RSS of ``genesel select``.

Usage::

    python benchmarks/select_scale.py --data STORE.h5ad --workdir /tmp/select-scale \\
        [--methods lassonet logitnormal ...] [--epochs 1] [--max-steps-per-epoch 20] [--record]

Each method runs as the ``genesel`` CLI under ``/usr/bin/time -v`` with K = 943 (the landmark
count) on a store from ``genesel preprocess`` (``benchmarks/geo_scale_data.py`` makes a
simulated 112,171 x 10,463 one). Training is cut short (``--epochs``,
``--max-steps-per-epoch``): peak memory does not depend on the number of steps, since the
loaders and the model are the same; the steps per second are measured on those steps. LassoNet
runs a coarse path (``METHOD_PARAMS``) so that it reaches K genes in minutes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from recording import markdown_table, record  # noqa: E402
from timing import measure  # noqa: E402

GENESEL = [sys.executable, "-m", "genesel.cli.main", "-q"]
METHODS = (
    "cae",
    "ipcae",
    "lassonet",
    "logitnormal",
    "logitnormal-hnet",
    "landmarks",
    "random",
    "hvg",
    "qr",
)
#: Extra ``--param`` values per method (a coarse LassoNet path: x2 per point, 1 epoch each).
METHOD_PARAMS: dict[str, list[str]] = {
    "lassonet": ["path_multiplier=2.0", "epochs_per_lambda=1", "refit_epochs=1"],
}
TRAINED = {"cae", "ipcae", "lassonet", "logitnormal", "logitnormal-hnet"}


def run_method(method: str, args: argparse.Namespace) -> dict[str, object]:
    """Select with ``method`` under GNU time and summarise its history."""
    out = args.workdir / method
    command = [
        *GENESEL,
        "select",
        "--data",
        str(args.data),
        "--method",
        method,
        "--n-genes",
        str(args.n_genes),
        "--out",
        str(out),
    ]
    if method in TRAINED:
        # the fixed budget this benchmark describes (no step minimum, no convergence stop)
        command += [
            "--epochs",
            str(args.epochs),
            "--device",
            args.device,
            "--min-steps",
            "0",
            "--no-stop-when-converged",
        ]
        if args.max_steps_per_epoch:
            command += ["--max-steps-per-epoch", str(args.max_steps_per_epoch)]
    for value in METHOD_PARAMS.get(method, []):
        command += ["--param", value]
    measured = measure(command, log=str(args.workdir / "log.txt"))
    panel = pd.read_csv(out / "panel.tsv", sep="\t", comment="#")
    row: dict[str, object] = {
        "method": method,
        "wall (s)": round(measured.seconds, 1),
        "peak RSS (GiB)": round(measured.peak_rss_gib, 2),
        "genes": f"{panel['gene_id'].nunique()} distinct",
        "steps/s or path": "",
    }
    history = out / "history.tsv"
    if history.exists():
        frame = pd.read_csv(history, sep="\t")
        if "steps_per_second" in frame:
            row["steps/s or path"] = round(float(frame["steps_per_second"].mean()), 2)
        if "n_selected" in frame:
            row["steps/s or path"] = (
                f"path: {len(frame)} points, {int(frame['n_selected'].iloc[0])} -> {int(frame['n_selected'].iloc[-1])} genes"
            )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, required=True, help="preprocessed store")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/genesel-select-scale"))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--n-genes", type=int, default=943)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--max-steps-per-epoch", type=int, default=20)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    rows = []
    for method in args.methods:
        rows.append(run_method(method, args))
        print(markdown_table(rows[-1:]), flush=True)
    table = markdown_table(rows)
    notes = (
        f"K = {args.n_genes}; trained methods: {args.epochs} epoch(s) of at most {args.max_steps_per_epoch} steps, "
        f"batch 256, device {args.device}; LassoNet params {METHOD_PARAMS['lassonet']}."
    )
    print(table)
    print(notes)
    if args.record:
        record("Every selector at GEO scale, data on disk", table, notes=notes)


if __name__ == "__main__":
    main()
