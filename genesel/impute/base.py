"""The contract every imputation decoder follows and the registry of decoders by name."""

from __future__ import annotations

import importlib
import inspect
import logging
import os
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from genesel.errors import ConfigError
from genesel.impute.decoders import DECODER_MODULES, available_decoders
from genesel.impute.genes import resolve_panel
from genesel.run import RunConfig

if TYPE_CHECKING:
    import pandas as pd
    from torch import nn

    from genesel.impute.model import ImputationModel
    from genesel.loader import LoaderConfig
    from genesel.store import Store
    from genesel.training import TrainerConfig

logger = logging.getLogger(__name__)

_REGISTRY: dict[str, type[Decoder]] = {}


@dataclass
class DecoderFit:
    """What a decoder's fit returns besides the data: the module and its records.

    Attributes
    ----------
    module
        The prediction module: standardised panel values to standardised genes.
    params
        Its init parameters, saved in ``model.json`` and given back to
        :meth:`Decoder.build_module` when the model is loaded.
    training
        Summary of the fit (solver, best epoch, ...), saved in ``model.json``.
    history
        Per-epoch training history (trained decoders), saved as ``history.tsv``.
    """

    module: nn.Module
    params: dict[str, Any]
    training: dict[str, Any] = field(default_factory=dict)
    history: pd.DataFrame | None = None


class Decoder(ABC):
    """Base class of the imputation decoders.

    Subclasses set ``name``, declare their hyperparameters as keyword-only ``__init__``
    arguments whose defaults are *the* defaults (the command line, :mod:`genesel.tl` and the
    workflow pass only what the user set), and implement :meth:`fit_module` and
    :meth:`build_module`. Register one with :func:`register_decoder` and a line in
    :data:`~genesel.impute.decoders.DECODER_MODULES`.
    """

    name: ClassVar[str]
    #: Whether the decoder trains a network (and so uses the trainer, loader and checkpoints).
    trainable: ClassVar[bool] = False
    #: Files the decoder writes into ``work_dir`` to resume from; useless once the model is saved.
    checkpoint_files: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def parameters(cls) -> dict[str, Any]:
        """The hyperparameters of this decoder with their defaults (from ``__init__``)."""
        return {
            name: parameter.default
            for name, parameter in inspect.signature(cls.__init__).parameters.items()
            if parameter.kind is inspect.Parameter.KEYWORD_ONLY
        }

    def hyperparameters(self) -> dict[str, Any]:
        """The keyword arguments this decoder was built with."""
        return {name: getattr(self, name) for name in self.parameters()}

    def fit(
        self,
        store: Store,
        panel: Any,
        *,
        trainer: TrainerConfig | None = None,
        run: RunConfig | None = None,
        loader: LoaderConfig | None = None,
        work_dir: str | os.PathLike[str] | None = None,
        resume: bool = False,
    ) -> ImputationModel:
        """Fit a model that imputes every gene of ``store`` from ``panel``.

        Parameters
        ----------
        store
            Preprocessed data; fits use the train split (and validation where they validate).
        panel
            Gene ids or symbols, a ``panel.tsv`` path or its directory, a panel table or a
            ``PanelResult`` (see :func:`~genesel.impute.genes.resolve_panel`).
        trainer
            Training hyperparameters of trained decoders; ``None`` (or ``None`` fields):
            the decoder's defaults.
        run
            Seed, device and progress bars (default :class:`~genesel.run.RunConfig`).
        loader
            Minibatch options of trained decoders.
        work_dir
            Checkpoint directory of trained decoders.
        resume
            Continue from the checkpoint in ``work_dir``.
        """
        from genesel.impute.model import ImputationModel
        from genesel.moments import store_fingerprint  # here: genesel.moments imports impute

        panel_indices = resolve_panel(panel, store.var)
        run = run or RunConfig()
        started = time.perf_counter()
        training: dict[str, Any] = {
            "n_train": int(store.require_split("train").size),
            "store": str(store.path) if store.path else None,
            "store_fingerprint": store_fingerprint(store),
        }
        result = self.fit_module(
            store,
            panel_indices,
            trainer=trainer,
            run=run,
            loader=loader,
            work_dir=work_dir,
            resume=resume,
        )
        training.update(result.training)
        training["seconds"] = time.perf_counter() - started
        symbols = store.var["symbol"] if "symbol" in store.var.columns else store.var.index
        model = ImputationModel(
            decoder=self.name,
            module=result.module,
            params=result.params,
            gene_ids=store.var.index.astype(str),
            symbols=symbols.astype(str).to_numpy(),
            panel_indices=panel_indices,
            mean=store.var["mean"].to_numpy(np.float64),
            std=store.var["std"].to_numpy(np.float64),
            training=training,
            history=result.history,
        )
        logger.info("fitted %r in %.1f s", model, training["seconds"])
        return model

    @abstractmethod
    def fit_module(
        self,
        store: Store,
        panel: np.ndarray,
        *,
        trainer: TrainerConfig | None,
        run: RunConfig,
        loader: LoaderConfig | None,
        work_dir: str | os.PathLike[str] | None,
        resume: bool,
    ) -> DecoderFit:
        """Fit the module from the panel columns ``panel`` to all genes of ``store``."""

    @classmethod
    @abstractmethod
    def build_module(
        cls, params: dict[str, Any], *, n_genes: int, n_vars: int, panel: np.ndarray
    ) -> nn.Module:
        """An untrained module from the ``params`` a fit saved (to load its weights into)."""


def register_decoder(cls: type[Decoder]) -> type[Decoder]:
    """Class decorator adding a decoder to the registry under ``cls.name``."""
    _REGISTRY[cls.name] = cls
    return cls


def get_decoder_class(name: str) -> type[Decoder]:
    """Return the decoder class registered as ``name``."""
    if name not in DECODER_MODULES:
        raise ConfigError(
            f"unknown decoder {name!r}; choose one of {', '.join(available_decoders())}",
            parameter="decoder",
        )
    importlib.import_module(DECODER_MODULES[name])
    return _REGISTRY[name]


def make_decoder(name: str, **params: Any) -> Decoder:
    """Instantiate a decoder, rejecting hyperparameters it does not have."""
    cls = get_decoder_class(name)
    allowed = list(cls.parameters())
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ConfigError(
            f"decoder {name!r} has no parameter(s) {unknown}; it accepts {allowed}",
            parameter="param:" + unknown[0],
        )
    return cls(**params)
