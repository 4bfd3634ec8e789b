"""Convergence of CAE/IP-CAE at the demo, README-tour and scanpy-example sizes: one JSON line per run.

Usage (the table in docs/methods.md "Step budget and convergence")::

    genesel simulate --out compendium.h5ad --n-obs 3000 --n-vars 1000 --seed 0
    genesel preprocess compendium.h5ad --out store.h5ad --seed 0
    python benchmarks/convergence_budget.py --store store.h5ad --case demo-cae --k 30 60 120
    python benchmarks/convergence_budget.py --case snippet --k 40 --params '{"selector_lr": 0.05}'

Cases: demo-cae (40 epochs, batch 64), demo-ipcae (30, 128), tour (CAE, 30, 256), snippet and
snippet-ipcae (pbmc68k_reduced raw, 50 epochs, batch 256). ``--trainer`` overrides TrainerConfig
fields as JSON. ``lin`` is the validation MSE of a least-squares linear decoder refitted on the panel.
"""

import argparse
import json
import time
import warnings

import numpy as np
import torch

from genesel.loader import LoaderConfig
from genesel.run import RunConfig
from genesel.selectors.select import select_panel
from genesel.store import Store
from genesel.training import TrainerConfig

warnings.filterwarnings("ignore")
torch.set_num_threads(1)

p = argparse.ArgumentParser()
p.add_argument("--case", required=True)  # demo-cae, demo-ipcae, tour, snippet
p.add_argument("--k", type=int, nargs="+", default=[30])
p.add_argument("--params", default="{}")
p.add_argument("--trainer", default="{}")
p.add_argument("--store", default="store.h5ad", help="the demo-sized store (demo and tour cases)")
a = p.parse_args()
cases = {  # case: (data, method, epochs, batch size)
    "demo-cae": (a.store, "cae", 40, 64),
    "demo-ipcae": (a.store, "ipcae", 30, 128),
    "tour": (a.store, "cae", 30, 256),
    "snippet": ("snippet", "cae", 50, 256),
    "snippet-ipcae": ("snippet", "ipcae", 50, 256),
}
path, method, epochs, batch = cases[a.case]
if path == "snippet":
    import scanpy as sc

    from genesel.tl._prepare import ensure_store  # noqa

    adata = sc.datasets.pbmc68k_reduced().raw.to_adata()
    store = ensure_store(adata, seed=0, layer=None)
else:
    store = Store.open(path)

Xtr = store.read_rows(store.split_indices("train")).astype(np.float64)
Xva = store.read_rows(store.split_indices("validation")).astype(np.float64)


def linear_refit(genes):
    A = np.c_[Xtr[:, genes], np.ones(len(Xtr))]
    W, *_ = np.linalg.lstsq(A, Xtr, rcond=None)
    B = np.c_[Xva[:, genes], np.ones(len(Xva))]
    return float(((B @ W - Xva) ** 2).mean())


for k in a.k:
    t = time.perf_counter()
    kw = dict(max_epochs=epochs)
    kw.update(json.loads(a.trainer))
    r = select_panel(
        store,
        method=method,
        n_genes=k,
        seed=0,
        params=json.loads(a.params),
        trainer=TrainerConfig(**kw),
        loader=LoaderConfig(batch_size=batch),
        run=RunConfig(device="cpu", progress=False),
    )
    wall = time.perf_counter() - t
    e = r.extra
    # validation loss of the final panel through the trained decoder (hard selection)
    print(
        json.dumps(
            {
                "case": a.case,
                "k": k,
                "params": a.params,
                "trainer": a.trainer,
                "wall_s": round(wall, 2),
                "mmp": round(e["mean_max_probability"], 4),
                "unique": e.get("unique_percent", e.get("unique_percent_argmax")),
                "val": round(e["best_validation_loss"], 5),
                "lin": round(linear_refit(r.gene_indices), 5),
                "epochs": e["epochs_trained"],
                "stopped": e["stopped"],
                "converged": e.get("converged"),
            }
        ),
        flush=True,
    )
