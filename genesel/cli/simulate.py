"""``genesel simulate``: write a simulated GEO-like compendium (.h5ad)."""

from __future__ import annotations

import argparse

from genesel.simulate import GEO_N_OBS, SimulationParams, simulate_compendium

_DEFAULTS = SimulationParams()


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``genesel simulate``."""
    parser = subparsers.add_parser(
        "simulate",
        help="simulate a GEO-like expression compendium",
        description=(
            "Write a simulated compendium with the genes of the D-GEX GEO data (943 L1000 landmarks "
            "then 9,520 targets, log2 scale, calibrated on real GPL96 arrays) as a dense .h5ad: "
            "obs 'cluster', var 'symbol', 'landmark', 'noise_var', 'noise_fraction', "
            "uns['genesel']['noise_floor']. The model is described in docs/simulation.md."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--out", required=True, help="output .h5ad")
    parser.add_argument("--n-obs", type=int, default=GEO_N_OBS, help="number of samples")
    parser.add_argument("--n-genes", type=int, default=None, help="keep this many genes in the D-GEX proportion (default: all 10,463)")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--block-rows", type=int, default=4096, help="rows written at a time (memory only; values do not change)")
    model = parser.add_argument_group("model")
    model.add_argument("--n-clusters", type=int, default=_DEFAULTS.n_clusters, help="tissue-like sample clusters")
    model.add_argument("--rank", type=int, default=_DEFAULTS.rank, help="latent factors")
    model.add_argument("--noise-df", type=float, default=_DEFAULTS.noise_df, help="Student-t degrees of freedom of the noise (> 2; inf: Gaussian)")
    model.add_argument("--noise-fraction", type=float, default=_DEFAULTS.noise_fraction, help="noise share of variance of a target gene of median brightness")
    model.add_argument("--nonlinear-share", type=float, default=_DEFAULTS.nonlinear_share, help="mean share of signal variance from nonlinear responses")
    model.add_argument("--tissue-share", type=float, default=_DEFAULTS.tissue_share, help="mean share of signal variance from cluster-specific offsets")
    model.add_argument("--cluster-separation", type=float, default=_DEFAULTS.cluster_separation, help="spread of cluster centres in factor space")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``genesel simulate``."""
    simulate_compendium(
        args.out,
        n_obs=args.n_obs,
        n_genes=args.n_genes,
        seed=args.seed,
        block_rows=args.block_rows,
        progress=getattr(args, "progress", True),
        n_clusters=args.n_clusters,
        rank=args.rank,
        noise_df=args.noise_df,
        noise_fraction=args.noise_fraction,
        nonlinear_share=args.nonlinear_share,
        tissue_share=args.tissue_share,
        cluster_separation=args.cluster_separation,
    )
    return 0
