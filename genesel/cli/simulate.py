"""``genesel simulate``: write a simulated GEO-like compendium (.h5ad)."""

from __future__ import annotations

import argparse

from genesel.cli.common import add_wait_argument
from genesel.io.lock import guarded_output
from genesel.simulate import BLOCK_ROWS, GEO_N_OBS, simulate_compendium
from genesel.simulation.params import SimulationParams

_DEFAULTS = SimulationParams()  # for the help texts; the defaults are the core's


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
        default=None,
        help=f"number of samples (default {GEO_N_OBS:,}, as the GEO data)",
    )
    parser.add_argument(
        "--n-vars",
        type=int,
        default=None,
        help="keep this many genes: the first landmarks and a seeded subset of targets, in the 943 : 9,520 proportion (default: all 10,463)",
    )
    parser.add_argument(
        "--seed", type=int, default=None, help="random seed of everything (default 0)"
    )
    parser.add_argument(
        "--block-rows",
        type=int,
        default=None,
        help=f"rows written at a time; sets memory use only, not the values (default {BLOCK_ROWS})",
    )
    add_wait_argument(parser)
    model = parser.add_argument_group("model")
    model.add_argument(
        "--n-clusters",
        type=int,
        default=None,
        help=f"tissue-like sample clusters (default {_DEFAULTS.n_clusters})",
    )
    model.add_argument(
        "--rank",
        type=int,
        default=None,
        help=f"latent factors (default {_DEFAULTS.rank})",
    )
    model.add_argument(
        "--n-programs",
        type=int,
        default=None,
        help=f"nonlinear regulatory programs (default {_DEFAULTS.n_programs})",
    )
    model.add_argument(
        "--noise-df",
        type=float,
        default=None,
        help=f"Student-t degrees of freedom of the noise, > 2; inf for Gaussian (default {_DEFAULTS.noise_df})",
    )
    model.add_argument(
        "--noise-fraction",
        type=float,
        default=None,
        help=f"noise share of the variance of a target gene of median brightness (default {_DEFAULTS.noise_fraction})",
    )
    model.add_argument(
        "--nonlinear-share",
        type=float,
        default=None,
        help=f"mean share of a target's signal variance from nonlinear responses (default {_DEFAULTS.nonlinear_share})",
    )
    model.add_argument(
        "--tissue-share",
        type=float,
        default=None,
        help=f"mean share of signal variance from cluster-specific offsets (default {_DEFAULTS.tissue_share})",
    )
    model.add_argument(
        "--cluster-separation",
        type=float,
        default=None,
        help=f"spread of the cluster centres in factor space (default {_DEFAULTS.cluster_separation})",
    )
    parser.set_defaults(func=run)


#: Options of ``genesel simulate`` passed to :func:`simulate_compendium` when given.
_OPTIONS = (
    "n_obs",
    "n_vars",
    "seed",
    "block_rows",
    "n_clusters",
    "rank",
    "n_programs",
    "noise_df",
    "noise_fraction",
    "nonlinear_share",
    "tissue_share",
    "cluster_separation",
)


def run(args: argparse.Namespace) -> int:
    """Run ``genesel simulate``."""
    given = {name: getattr(args, name) for name in _OPTIONS if getattr(args, name) is not None}
    with guarded_output(args.out, kind="file", wait=args.wait):
        simulate_compendium(args.out, progress=getattr(args, "progress", True), **given)
    return 0
