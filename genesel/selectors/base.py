"""The contract every panel selector follows and the registry of selectors by method name."""

from __future__ import annotations

import importlib
import inspect
import logging
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

from genesel.errors import ConfigError
from genesel.loader import LoaderConfig, MinibatchLoader
from genesel.panel import PanelResult
from genesel.run import RunConfig, resolve_device
from genesel.selectors.constraints import GeneConstraints
from genesel.selectors.methods import METHOD_MODULES, available_methods
from genesel.store import Store
from genesel.training import TrainerConfig

logger = logging.getLogger(__name__)


_REGISTRY: dict[str, type[PanelSelector]] = {}


def warn_unconverged(method: str, extra: dict[str, Any], *, fix: str) -> None:
    """Log the one-line warning of a panel whose training ended unconverged."""
    probability = extra.get("mean_max_probability")
    unique = extra.get("unique_percent")
    facts = ", ".join(
        part
        for part in (
            None if probability is None else f"mean max selection probability {probability:.3g}",
            None if unique is None else f"{unique:.0f}% distinct genes",
            None if extra.get("steps") is None else f"after {extra['steps']} steps",
        )
        if part
    )
    logger.warning(
        "%s: training ended unconverged (%s); the panel may be close to random. Fix: %s",
        method,
        facts,
        fix,
    )


class PanelSelector(ABC):
    """Base class of all selectors.

    Subclasses set ``method``, declare their hyperparameters as keyword-only
    ``__init__`` arguments (after ``n_genes`` and ``seed``) and implement :meth:`select`.
    """

    method: ClassVar[str]
    #: Whether the method trains a network (and so uses the trainer and loaders).
    trainable: ClassVar[bool] = False
    #: Files this method writes into ``work_dir`` to resume from; useless once the panel is written.
    checkpoint_files: ClassVar[tuple[str, ...]] = ()
    #: Whether the method honours per-gene costs and a budget (``GeneConstraints.costs``/``budget``).
    supports_costs: ClassVar[bool] = True
    #: Whether the method reads the store's gene-by-gene moments (``moments`` parameter; the
    #: workflow then gives it the shared moments file).
    uses_moments: ClassVar[bool] = False

    def __init__(self, *, n_genes: int, seed: int = 0) -> None:
        self.n_genes = int(n_genes)
        self.seed = int(seed)
        self.constraints = GeneConstraints()

    def constrain(self, constraints: GeneConstraints) -> None:
        """Make every panel contain ``constraints.include`` and none of ``constraints.exclude``.

        :func:`select_panel` calls this with the resolved lists; each method honours them in
        its own way (see docs/methods.md, "Include and exclude").
        """
        if constraints.include.size > self.n_genes:
            raise ConfigError(
                f"{self.method}: {constraints.include.size} included genes exceed n_genes={self.n_genes}",
                parameter="include",
            )
        if constraints.costs is not None and not self.supports_costs:
            raise ConfigError(
                f"{self.method} is not supported with gene costs or a budget (gene_cost, budget); use greedy, lassonet or logitnormal",
                parameter="budget" if constraints.budgeted else "gene_cost",
            )
        self.constraints = constraints

    @property
    def n_free(self) -> int:
        """Panel genes the method chooses itself (``n_genes`` minus the included ones)."""
        return self.n_genes - int(self.constraints.include.size)

    @abstractmethod
    def select(
        self,
        store: Store,
        *,
        trainer: TrainerConfig | None = None,
        loader: LoaderConfig | None = None,
        run: RunConfig | None = None,
        work_dir: Path | None = None,
        resume: bool = False,
    ) -> PanelResult:
        """Choose ``n_genes`` genes from ``store``'s train (and validation) split.

        Parameters
        ----------
        store
            The data.
        trainer
            Training hyperparameters (trained methods); ``None``: the defaults.
        loader
            How minibatches are read; ``None``: the defaults.
        run
            Seed, device, progress bar and precision; ``None``: the defaults seeded with this
            selector's seed.
        work_dir
            Where a trained method keeps its checkpoint (``None``: nowhere).
        resume
            Continue from the checkpoint in ``work_dir`` when it was made by this run.
        """

    def check_panel_size(self, store: Store) -> None:
        """Raise :class:`ConfigError` unless ``1 <= n_genes < store.n_vars``."""
        if not 1 <= self.n_genes < store.n_vars:
            raise ConfigError(
                f"{self.method}: n_genes={self.n_genes} must be between 1 and {store.n_vars - 1} (the store has {store.n_vars} genes)",
                parameter="n_genes",
            )

    def run_config(self, run: RunConfig | None) -> RunConfig:
        """The given run, or the default one seeded with this selector's seed."""
        return run or RunConfig(seed=self.seed)

    def training_configs(
        self,
        trainer: TrainerConfig | None,
        loader: LoaderConfig | None,
        run: RunConfig | None = None,
    ) -> tuple[TrainerConfig, LoaderConfig, RunConfig]:
        """The given configurations, or the defaults (the run seeded with this selector's seed)."""
        return (
            trainer or TrainerConfig(),
            loader or LoaderConfig(),
            self.run_config(run),
        )

    def hyperparameters(self) -> dict[str, Any]:
        """The keyword arguments this selector was built with."""
        names = [
            p
            for p in inspect.signature(type(self).__init__).parameters
            if p not in ("self", "n_genes", "seed")
        ]
        return {name: getattr(self, name) for name in names if hasattr(self, name)}

    def fingerprint(self) -> dict[str, Any]:
        """What identifies this selector's run besides data and trainer: method, panel size, hyperparameters, gene constraints.

        Trainers record it in their checkpoints (see :func:`genesel.checkpoint.run_fingerprint`),
        so ``resume`` refuses a checkpoint made with other values.
        """
        values = {"method": self.method, "n_genes": self.n_genes, **self.hyperparameters()}
        constraints = self.constraints.fingerprint()
        if (
            constraints
        ):  # resuming with other include/exclude lists, costs or budget is another run
            values["constraints"] = constraints
        return values


def training_loaders(
    store: Store, *, loader: LoaderConfig, run: RunConfig, method: str
) -> tuple[MinibatchLoader, MinibatchLoader | None]:
    """A shuffled train loader and an ordered validation loader (``None`` without validation rows).

    Both deliver batches to the run's device; the train loader shuffles with the run's seed.
    """
    store.require_split("train")
    device = resolve_device(run.device)
    train = MinibatchLoader(
        store, "train", config=loader, shuffle=True, seed=run.seed, device=device
    )
    if not store.split_indices("validation").size:
        logger.warning(
            "%s: the store has no validation rows; keeping the weights of the best training loss",
            method,
        )
        return train, None
    return train, MinibatchLoader(store, "validation", config=loader, shuffle=False, device=device)


def register_selector(cls: type[PanelSelector]) -> type[PanelSelector]:
    """Class decorator adding a selector to the registry under ``cls.method``."""
    _REGISTRY[cls.method] = cls
    return cls


def get_selector_class(method: str) -> type[PanelSelector]:
    """Return the selector class registered as ``method``."""
    if method not in METHOD_MODULES:
        raise ConfigError(
            f"unknown method {method!r}; choose one of {', '.join(available_methods())}",
            parameter="method",
        )
    importlib.import_module(f"genesel.selectors.{METHOD_MODULES[method]}")
    return _REGISTRY[method]


def make_selector(
    method: str, *, n_genes: int, seed: int = 0, params: dict[str, Any] | None = None
) -> PanelSelector:
    """Instantiate a selector, rejecting hyperparameters it does not have."""
    cls = get_selector_class(method)
    params = dict(params or {})
    allowed = [
        p
        for p in inspect.signature(cls.__init__).parameters
        if p not in ("self", "n_genes", "seed")
    ]
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ConfigError(
            f"method {method!r} has no parameter(s) {unknown}; it accepts {allowed}",
            parameter=f"param:{unknown[0]}",
        )
    return cls(n_genes=n_genes, seed=seed, **params)
