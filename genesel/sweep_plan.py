"""The sweep plan: which panels (method x panel size x seed) a panel-size curve selects.

One plan for both front doors that run sweeps: :func:`genesel.tl.panel_curve` iterates it
and the workflow (``workflow/rules/common.smk``) builds its targets from it. The rules:

- the sizes are the given ones, plus the landmark count and +-25 % of it
  (:func:`sizes_around_landmarks`) when asked;
- the ``landmarks`` method runs at its own size only (the number of landmark genes);
- the ``random`` method, when the linear decoder scores the panels, contributes
  ``random_panels`` seeded panels per size (seeds ``0 .. random_panels - 1``) that the linear
  curve draws itself (:attr:`PanelRun.drawn`); when another decoder is fitted, it is selected
  with its seeds like any method;
- every other method runs at every size with each of its seeds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from genesel.errors import ConfigError

#: The method whose panel is the data's L1000 landmark genes (its size is fixed by the data).
LANDMARK_METHOD = "landmarks"
#: The seeded uniform baseline.
RANDOM_METHOD = "random"
#: The decoder scored from the moments in one job, which draws the random panels itself.
LINEAR_DECODER = "linear"
#: Panel sizes added around the landmark count (``sizes_around_landmarks``).
LANDMARK_SIZE_FACTORS = (0.75, 1.0, 1.25)


@dataclass(frozen=True)
class PanelRun:
    """One panel of the sweep.

    Attributes
    ----------
    method
        Selection method.
    n_genes
        Panel size.
    seed
        Seed of the selection.
    drawn
        A random panel the linear curve draws itself (no selection job, no panel file).
    """

    method: str
    n_genes: int
    seed: int
    drawn: bool = False


@dataclass(frozen=True)
class SweepPlan:
    """The panels of a sweep, in order: by method (as given), then size, then seed.

    Attributes
    ----------
    sizes
        The panel sizes of every method but ``landmarks``, sorted.
    runs
        Every panel of the sweep.
    """

    sizes: tuple[int, ...]
    runs: tuple[PanelRun, ...]

    @property
    def selected(self) -> list[PanelRun]:
        """The panels selected one by one (each has its panel file), landmark panel included."""
        return [run for run in self.runs if not run.drawn]

    @property
    def drawn(self) -> list[PanelRun]:
        """The random panels the linear curve draws itself."""
        return [run for run in self.runs if run.drawn]


def sizes_around_landmarks(n_landmarks: int, n_vars: int) -> set[int]:
    """Panel sizes at the landmark count and +-25 % of it (below ``n_vars``); none without landmarks."""
    if not n_landmarks:
        return set()
    return {
        k for k in (max(1, round(f * n_landmarks)) for f in LANDMARK_SIZE_FACTORS) if k < n_vars
    }


def plan_sweep(
    method_seeds: Mapping[str, Sequence[int]],
    sizes: Sequence[int],
    *,
    decoders: Sequence[str],
    gene_counts: Callable[[], tuple[int, int]],
    random_panels: int,
    around_landmarks: bool = True,
) -> SweepPlan:
    """Expand methods x panel sizes x seeds into the panels of a sweep.

    Parameters
    ----------
    method_seeds
        The seeds of each method, in the order the methods run.
    sizes
        Panel sizes.
    decoders
        The decoders that score the panels: with ``linear`` the random panels are drawn
        by the linear curve; with any other, ``random`` is selected with its seeds.
    gene_counts
        Returns the data's number of landmark genes and of all genes; called only when
        needed (``landmarks`` among the methods or ``around_landmarks``), so that the
        workflow can plan before its store exists.
    random_panels
        Random panels per size the linear curve draws (the callers' default is
        :data:`genesel.impute.curve.DEFAULT_RANDOM_PANELS`).
    around_landmarks
        Add the landmark count and +-25 % of it to ``sizes``.

    Returns
    -------
    The plan.

    Raises
    ------
    ConfigError
        When ``landmarks`` is asked for but the data flags no landmark genes.
    """
    chosen = {int(k) for k in sizes}
    if around_landmarks:
        chosen |= sizes_around_landmarks(*gene_counts())
    plan_sizes = tuple(sorted(chosen))
    linear = LINEAR_DECODER in decoders
    fitted = any(d != LINEAR_DECODER for d in decoders)
    runs: list[PanelRun] = []
    for method, seeds in method_seeds.items():
        seeds = [int(s) for s in seeds]
        if method == LANDMARK_METHOD:
            n_landmarks = gene_counts()[0]
            if n_landmarks == 0:
                raise ConfigError(
                    "method 'landmarks' needs landmark genes, but var['landmark'] flags none",
                    parameter="methods",
                )
            runs += [PanelRun(method, n_landmarks, s) for s in seeds]
            continue
        if method != RANDOM_METHOD or fitted:
            runs += [PanelRun(method, k, s) for k in plan_sizes for s in seeds]
        if method == RANDOM_METHOD and linear:
            draws = range(int(random_panels))
            runs += [PanelRun(method, k, s, drawn=True) for k in plan_sizes for s in draws]
    return SweepPlan(plan_sizes, tuple(runs))
