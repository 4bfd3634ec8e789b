"""``genesel simulate``: write a simulated GEO-like compendium (.h5ad)."""

from __future__ import annotations

import argparse

from genesel.cli.common import add_wait_argument
from genesel.io.lock import guarded_output
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
    )
    parser.add_argument("--out", required=True, help="output .h5ad")
    parser.add_argument(
        "--n-obs",
        type=int,
        default=GEO_N_OBS,
        help=f"number of samples (default {GEO_N_OBS:,}, as the GEO data)",
    )
    parser.add_argument(
        "--n-genes",
        type=int,
        default=None,
        help="keep this many genes: the first landmarks and a seeded subset of targets, in the 943 : 9,520 proportion (default: all 10,463)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="random seed of everything (default 0)"
    )
    parser.add_argument(
        "--block-rows",
        type=int,
        default=4096,
        help="rows written at a time; sets memory use only, not the values (default 4096)",
    )
    add_wait_argument(parser)
    model = parser.add_argument_group("model")
    model.add_argument(
        "--n-clusters",
        type=int,
        default=_DEFAULTS.n_clusters,
        help=f"tissue-like sample clusters (default {_DEFAULTS.n_clusters})",
    )
    model.add_argument(
        "--rank",
        type=int,
        default=_DEFAULTS.rank,
        help=f"latent factors (default {_DEFAULTS.rank})",
    )
    model.add_argument(
        "--n-programs",
        type=int,
        default=_DEFAULTS.n_programs,
        help=f"nonlinear regulatory programs (default {_DEFAULTS.n_programs})",
    )
    model.add_argument(
        "--noise-df",
        type=float,
        default=_DEFAULTS.noise_df,
        help=f"Student-t degrees of freedom of the noise, > 2; inf for Gaussian (default {_DEFAULTS.noise_df})",
    )
    model.add_argument(
        "--noise-fraction",
        type=float,
        default=_DEFAULTS.noise_fraction,
        help=f"noise share of the variance of a target gene of median brightness (default {_DEFAULTS.noise_fraction})",
    )
    model.add_argument(
        "--nonlinear-share",
        type=float,
        default=_DEFAULTS.nonlinear_share,
        help=f"mean share of a target's signal variance from nonlinear responses (default {_DEFAULTS.nonlinear_share})",
    )
    model.add_argument(
        "--tissue-share",
        type=float,
        default=_DEFAULTS.tissue_share,
        help=f"mean share of signal variance from cluster-specific offsets (default {_DEFAULTS.tissue_share})",
    )
    model.add_argument(
        "--cluster-separation",
        type=float,
        default=_DEFAULTS.cluster_separation,
        help=f"spread of the cluster centres in factor space (default {_DEFAULTS.cluster_separation})",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``genesel simulate``."""
    with guarded_output(args.out, kind="file", wait=args.wait):
        simulate_compendium(
            args.out,
            n_obs=args.n_obs,
            n_genes=args.n_genes,
            seed=args.seed,
            block_rows=args.block_rows,
            progress=getattr(args, "progress", True),
            n_clusters=args.n_clusters,
            rank=args.rank,
            n_programs=args.n_programs,
            noise_df=args.noise_df,
            noise_fraction=args.noise_fraction,
            nonlinear_share=args.nonlinear_share,
            tissue_share=args.tissue_share,
            cluster_separation=args.cluster_separation,
        )
    return 0
