"""The contract every panel selector follows, the registry, and ``select_panel``."""

from __future__ import annotations

import importlib
import inspect
import json
import logging
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch

from genesel.errors import ConfigError, InputFileError
from genesel.io.atomic import atomic_output, removing_on_error, write_json
from genesel.loader import LoaderConfig, MinibatchLoader
from genesel.selectors.constraints import (
    DEFAULT_COST,
    CostSpec,
    GeneConstraints,
    GeneSpec,
    resolve_constraints,
    resolve_costs,
)
from genesel.selectors.methods import METHOD_MODULES, available_methods
from genesel.store import Store
from genesel.training import TrainerConfig, resolve_device

logger = logging.getLogger(__name__)


_REGISTRY: dict[str, type[PanelSelector]] = {}

#: Columns of ``panel.tsv``.
PANEL_COLUMNS = ("rank", "gene_id", "symbol", "landmark", "score", "status")
#: Values of ``panel.tsv``'s ``status``: a gene the user fixed (``include``) or one the method chose.
PANEL_STATUSES = ("included", "selected")
#: The files of a selection result in its folder (``panel.tsv`` is written last).
RESULT_FILES = ("history.tsv", "model.pt", "config.json", "panel.tsv")
#: Run facts written as ``# key=value`` lines above the header of ``panel.tsv`` (when known).
PANEL_METADATA_KEYS = (
    "method",
    "n_genes",
    "n_included",
    "seed",
    "converged",
    "mean_max_probability",
    "unique_percent",
    "stopped",
    "steps",
    "total_cost",
    "budget",
    "gene_cost_sha256",
)


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


def panel_metadata(result: PanelResult) -> dict[str, Any]:
    """The ``# key=value`` facts of ``result`` written above the ``panel.tsv`` header."""
    known = {
        "method": result.method,
        "n_genes": result.n_genes,
        "seed": result.seed,
        **result.extra,
    }
    if result.included is not None and result.included.any():
        known["n_included"] = int(result.included.sum())
    return {key: known[key] for key in PANEL_METADATA_KEYS if key in known}


def _metadata_text(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, float | np.floating):
        return f"{float(value):.6g}"
    return str(value)


def _metadata_value(text: str) -> Any:
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null", ""):
        return None
    for parse in (int, float):
        try:
            return parse(text)
        except ValueError:
            pass
    return text.strip()


@dataclass
class PanelResult:
    """A selected panel with everything needed to audit and reuse it.

    Attributes
    ----------
    method, n_genes, seed
        What was run.
    gene_indices
        Column indices into the store, best first (length ``n_genes``, distinct).
    var
        The store's gene annotation (all genes).
    scores
        Optional per-panel-gene score (higher = more important), aligned with ``gene_indices``.
    history
        Per-epoch training history, if the method trains.
    state_dict
        Trained weights, if any (saved as ``model.pt``).
    config
        Every hyperparameter, for ``config.json``.
    extra
        Method-specific results (duplicates resolved, a LassoNet path, ...), also in ``config.json``.
    included
        Per panel gene, whether the user fixed it (``include``) rather than the method chose
        it; ``None``: none was.
    costs
        Per panel gene, its cost (``None``: no costs were given); ``panel.tsv``'s ``cost`` column.
    """

    method: str
    n_genes: int
    seed: int
    gene_indices: np.ndarray
    var: pd.DataFrame
    scores: np.ndarray | None = None
    history: pd.DataFrame | None = None
    state_dict: dict[str, torch.Tensor] | None = None
    config: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    included: np.ndarray | None = None
    costs: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.gene_indices = np.asarray(self.gene_indices, dtype=np.int64)
        self.included = (
            np.zeros(self.gene_indices.size, dtype=bool)
            if self.included is None
            else np.asarray(self.included, dtype=bool)
        )
        if self.included.shape != self.gene_indices.shape:
            raise ValueError(
                f"{self.method}: 'included' has {self.included.size} flags for {self.gene_indices.size} panel genes"
            )
        if len(np.unique(self.gene_indices)) != len(self.gene_indices):
            raise ValueError(f"{self.method}: panel has duplicate genes")
        if len(self.gene_indices) != self.n_genes:
            raise ValueError(
                f"{self.method}: panel has {len(self.gene_indices)} genes, expected {self.n_genes}"
            )

    @property
    def gene_ids(self) -> pd.Index:
        """Identifiers of the panel genes, best first."""
        return self.var.index[self.gene_indices]

    def table(self) -> pd.DataFrame:
        """The panel as written to ``panel.tsv``."""
        chosen = self.var.iloc[self.gene_indices]
        symbol = (
            chosen["symbol"] if "symbol" in chosen else pd.Series(chosen.index, index=chosen.index)
        )
        landmark = (
            chosen["landmark"] if "landmark" in chosen else pd.Series(False, index=chosen.index)
        )
        return pd.DataFrame(
            {
                "rank": np.arange(1, self.n_genes + 1),
                "gene_id": chosen.index.astype(str),
                "symbol": symbol.astype(str).to_numpy(),
                "landmark": landmark.astype(bool).to_numpy(),
                "score": np.full(self.n_genes, np.nan)
                if self.scores is None
                else np.asarray(self.scores, float),
                "status": np.where(self.included, PANEL_STATUSES[0], PANEL_STATUSES[1]),
                **({} if self.costs is None else {"cost": np.asarray(self.costs, dtype=float)}),
            }
        )

    def write(self, out_dir: str | os.PathLike[str]) -> Path:
        """Write ``panel.tsv``, ``history.tsv``, ``config.json`` and ``model.pt`` (if trained).

        ``panel.tsv`` goes last, so its presence means the result is complete; should a
        write fail (a full disk), all four are removed rather than leave new files beside
        old ones.
        """
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "panel.tsv").unlink(missing_ok=True)
        with removing_on_error(*(out_dir / name for name in RESULT_FILES)):
            if self.history is not None:
                with atomic_output(out_dir / "history.tsv") as tmp:
                    self.history.to_csv(tmp, sep="\t", index=False)
            if self.state_dict is not None:
                with atomic_output(out_dir / "model.pt") as tmp:
                    torch.save({k: v.detach().cpu() for k, v in self.state_dict.items()}, tmp)
            write_json(
                out_dir / "config.json",
                {
                    "method": self.method,
                    "n_genes": self.n_genes,
                    "seed": self.seed,
                    "config": self.config,
                    "extra": self.extra,
                },
            )
            with atomic_output(out_dir / "panel.tsv") as tmp:
                with open(tmp, "w", newline="") as handle:
                    for key, value in panel_metadata(self).items():
                        handle.write(f"# {key}={_metadata_text(value)}\n")
                    self.table().to_csv(handle, sep="\t", index=False)
        logger.info("wrote %s panel of %d genes to %s", self.method, self.n_genes, out_dir)
        return out_dir


def read_panel(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a ``panel.tsv`` (or a directory holding one) written by :meth:`PanelResult.write`."""
    path = Path(path)
    if path.is_dir():
        path = path / "panel.tsv"
    if not path.exists():
        raise InputFileError(path, "no such panel file", "run `genesel select` first")
    try:
        table = pd.read_csv(path, sep="\t", dtype={"gene_id": str, "symbol": str}, comment="#")
    except Exception as error:
        raise InputFileError(path, f"cannot parse panel table ({error})") from None
    missing = [c for c in ("rank", "gene_id") if c not in table.columns]
    if missing:
        raise InputFileError(
            path,
            f"panel table lacks columns {missing}",
            "expected the panel.tsv written by genesel select",
        )
    if table["gene_id"].duplicated().any():
        raise InputFileError(
            path,
            f"duplicate genes in panel: {table.loc[table['gene_id'].duplicated(), 'gene_id'].tolist()[:5]}",
        )
    if (
        "status" not in table.columns
    ):  # written before include/exclude existed: every gene was selected
        table["status"] = PANEL_STATUSES[1]
    return table.sort_values("rank").reset_index(drop=True)


def read_panel_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``# key=value`` lines above the header of a ``panel.tsv`` (or a directory holding one).

    Values are parsed back to ``bool`` / ``int`` / ``float`` / ``None`` where they look like
    one; a panel written before these lines existed gives ``{}``. Keys include ``method``,
    ``n_genes``, ``seed`` and, for trained selectors, ``converged``,
    ``mean_max_probability`` and ``unique_percent`` (see ``PANEL_METADATA_KEYS``).
    """
    path = Path(path)
    if path.is_dir():
        path = path / "panel.tsv"
    if not path.exists():
        raise InputFileError(path, "no such panel file", "run `genesel select` first")
    metadata: dict[str, Any] = {}
    with open(path) as handle:
        for line in handle:
            if not line.startswith("#"):
                break
            key, sep, value = line[1:].strip().partition("=")
            if sep:
                metadata[key.strip()] = _metadata_value(value)
    return metadata


def read_panel_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read the ``config.json`` beside a panel."""
    path = Path(path)
    path = path / "config.json" if path.is_dir() else path.with_name("config.json")
    return json.loads(path.read_text()) if path.exists() else {}


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
                f"{self.method}: {constraints.include.size} included genes exceed n_genes={self.n_genes}"
            )
        if constraints.costs is not None and not self.supports_costs:
            raise ConfigError(
                f"{self.method} is not supported with --budget/--gene-cost (budget/gene_cost); use greedy, lassonet or logitnormal"
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
        work_dir: Path | None = None,
        resume: bool = False,
    ) -> PanelResult:
        """Choose ``n_genes`` genes from ``store``'s train (and validation) split."""

    def check_panel_size(self, store: Store) -> None:
        """Raise :class:`ConfigError` unless ``1 <= n_genes < store.n_vars``."""
        if not 1 <= self.n_genes < store.n_vars:
            raise ConfigError(
                f"{self.method}: n_genes={self.n_genes} must be between 1 and {store.n_vars - 1} (the store has {store.n_vars} genes)"
            )

    def training_configs(
        self, trainer: TrainerConfig | None, loader: LoaderConfig | None
    ) -> tuple[TrainerConfig, LoaderConfig]:
        """The given configurations, or the defaults (seeded with this selector's seed)."""
        return trainer or TrainerConfig(seed=self.seed), loader or LoaderConfig()

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

        Trainers record it in their checkpoints (see :func:`genesel.training.run_fingerprint`),
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
    store: Store, *, trainer: TrainerConfig, loader: LoaderConfig, method: str
) -> tuple[MinibatchLoader, MinibatchLoader | None]:
    """A shuffled train loader and an ordered validation loader (``None`` without validation rows).

    Both deliver batches to the trainer's device; the train loader shuffles with the
    trainer's seed.
    """
    store.require_split("train")
    device = resolve_device(trainer.device)
    train = MinibatchLoader(
        store, "train", config=loader, shuffle=True, seed=trainer.seed, device=device
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
            f"unknown method {method!r}; choose one of {', '.join(available_methods())}"
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
        raise ConfigError(f"method {method!r} has no parameter(s) {unknown}; it accepts {allowed}")
    return cls(n_genes=n_genes, seed=seed, **params)


def check_constraints(result: PanelResult, constraints: GeneConstraints) -> np.ndarray:
    """Whether each panel gene is included; raise if the method broke ``constraints``.

    A guard, not a repair: every method honours the lists itself, so a failure here is a
    bug of that method.
    """
    panel = result.gene_indices
    missing = np.setdiff1d(constraints.include, panel)
    present = np.intersect1d(constraints.exclude, panel)
    over = constraints.budgeted and constraints.panel_cost(panel) > constraints.budget * (1 + 1e-6)
    short = constraints.budgeted and constraints.exact_size and panel.size != constraints.n_genes
    if over or short:
        raise RuntimeError(
            f"{result.method} broke the budget: {panel.size} genes costing {constraints.panel_cost(panel):g} for the budget "
            f"{constraints.budget:g}{f' and n_genes={constraints.n_genes}' if constraints.exact_size else ''} (a bug; please report it)"
        )
    if missing.size or present.size:
        ids = result.var.index.astype(str)
        raise RuntimeError(
            f"{result.method} broke the gene constraints: included genes missing {ids[missing].tolist()[:10]}, "
            f"excluded genes present {ids[present].tolist()[:10]} (a bug; please report it)"
        )
    return np.isin(panel, constraints.include)


def select_panel(
    store: Store,
    *,
    method: str,
    n_genes: int | None = None,
    seed: int = 0,
    params: dict[str, Any] | None = None,
    trainer: TrainerConfig | None = None,
    loader: LoaderConfig | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    resume: bool = False,
    refine: bool | dict[str, Any] = False,
    include: GeneSpec = None,
    exclude: GeneSpec = None,
    gene_cost: CostSpec = None,
    default_cost: float = DEFAULT_COST,
    budget: float | None = None,
) -> PanelResult:
    """Select a panel of ``n_genes`` genes with ``method`` and optionally write it to ``out_dir``.

    This is the one entry point shared by the CLI, the scanpy API and the workflow.
    ``refine`` (``True`` or options of :func:`genesel.selectors.greedy.refine_result`:
    ``ridge``, ``max_swaps``, ``moments``, ``max_memory_gib``) then swaps panel genes for
    outside genes while that lowers the validated ridge imputation error (any method).

    ``include`` and ``exclude`` (gene ids or symbols: a list, a comma-separated string, a
    file, or the word ``"landmarks"``; see :mod:`genesel.selectors.constraints`) fix genes
    in the panel and keep genes out of it; ``n_genes`` counts the included genes. Every
    method honours them natively; the included genes lead the panel and ``panel.tsv`` marks
    them ``included`` (the others ``selected``). With as many included genes as
    ``n_genes`` the panel is the included genes and no method runs.

    ``gene_cost`` (a TSV file with columns ``gene`` and ``cost``, a Series or a dict; genes it
    does not name cost ``default_cost``) and ``budget`` bound the panel's total cost: the
    included genes count towards it. With ``budget`` and no ``n_genes`` the panel has as
    many genes as the method fits within it; with both, exactly ``n_genes`` genes within
    it. greedy, lassonet and logitnormal use the costs natively (also without a budget);
    see docs/methods.md, "Costs and budgets". ``panel.tsv`` then gets a ``cost`` column and
    the total cost, budget and cost table hash in its header.
    """
    if n_genes is None and budget is None:
        raise ConfigError("n_genes is required (or a budget, to fit as many genes as it allows)")
    if n_genes is not None:
        if not isinstance(n_genes, int | np.integer) or n_genes < 1:
            raise ConfigError(f"n_genes must be a positive integer, got {n_genes!r}")
        if n_genes >= store.n_vars:
            raise ConfigError(
                f"n_genes={n_genes} must be smaller than the number of genes in the data ({store.n_vars})"
            )
    if budget is not None and refine:
        raise ConfigError(
            "refine is not supported with a budget (a swap may break it); drop refine or the budget"
        )
    store.require_split("train")
    costs = (
        None
        if gene_cost is None and budget is None
        else resolve_costs(store.var, gene_cost, default_cost=default_cost)
    )
    constraints = resolve_constraints(
        store.var, n_genes, include=include, exclude=exclude, costs=costs, budget=budget
    )
    n_genes = int(constraints.n_genes)
    selector = make_selector(method, n_genes=n_genes, seed=seed, params=params)
    selector.constrain(constraints)
    work_dir = None if out_dir is None else Path(out_dir)
    if work_dir is not None:
        work_dir.mkdir(parents=True, exist_ok=True)
    trainer = trainer or TrainerConfig(seed=seed)
    if trainer.seed != seed:
        trainer = TrainerConfig(**{**trainer.__dict__, "seed": seed})
    if selector.n_free == 0:
        logger.info(
            "%s: all %d panel genes are included; nothing to select", method, selector.n_genes
        )
        result = PanelResult(
            method=method,
            n_genes=selector.n_genes,
            seed=seed,
            gene_indices=constraints.include,
            var=store.var,
            extra={"ranking": "the included genes, in the order given"},
        )
    else:
        result = selector.select(
            store, trainer=trainer, loader=loader, work_dir=work_dir, resume=resume
        )
    result.config = {
        "params": selector.hyperparameters(),
        "trainer": trainer.__dict__ if selector.trainable else None,
        **result.config,
    }
    result.config.update(constraints.record(store.var))
    if refine:
        from genesel.selectors.greedy import refine_result

        options = dict(refine) if isinstance(refine, dict) else {}
        unknown = sorted(set(options) - {"ridge", "max_swaps", "moments", "max_memory_gib"})
        if unknown:
            raise ConfigError(
                f"refine has no option(s) {unknown}; it accepts ridge, max_swaps, moments, max_memory_gib"
            )
        result = refine_result(
            store,
            result,
            work_dir=work_dir,
            progress=trainer.progress,
            constraints=constraints,
            **options,
        )
        result.config["refine"] = options or True
    result.included = check_constraints(result, constraints)
    if constraints.costs is not None:
        result.costs = constraints.cost[result.gene_indices]
        result.extra["total_cost"] = float(result.costs.sum())
        if constraints.costs.sha256 is not None:
            result.extra["gene_cost_sha256"] = constraints.costs.sha256
        if constraints.budgeted:
            result.extra["budget"] = constraints.budget
            if not constraints.exact_size:
                logger.info(
                    "%s: %d genes fit the budget %g (total cost %g)",
                    method,
                    result.n_genes,
                    constraints.budget,
                    result.extra["total_cost"],
                )
    if work_dir is not None:
        result.write(work_dir)
    return result
