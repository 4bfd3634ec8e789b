"""The training recipe shared by the selectors that train a network: :class:`TrainedSelector`."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

import torch

from genesel.loader import LoaderConfig, MinibatchLoader
from genesel.panel import PanelResult
from genesel.run import RunConfig
from genesel.selectors.base import PanelSelector, training_loaders
from genesel.store import Store
from genesel.trainer import Trainer
from genesel.training import TrainerConfig, TrainingResult, seed_everything

logger = logging.getLogger(__name__)

#: The network type a selector trains.
ModelT = TypeVar("ModelT", bound=torch.nn.Module)

#: File name of a trained selector's per-epoch checkpoint inside ``work_dir``.
CHECKPOINT_NAME = "checkpoint.pt"


@contextmanager
def seeded_init(seed: int) -> Iterator[None]:
    """Draw a network's initial weights from ``seed`` without touching torch's global stream."""
    with torch.random.fork_rng(devices=[]):
        seed_everything(seed, -2)
        yield


def cpu_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy of ``model``'s state dict (what a :class:`PanelResult` keeps)."""
    return {key: value.detach().cpu() for key, value in model.state_dict().items()}


@dataclass
class TrainedModel(Generic[ModelT]):
    """What :meth:`TrainedSelector.train_model` produced.

    Attributes
    ----------
    model
        The network, holding its best-validation weights.
    fit
        The trainer's account of the run (history, best epoch, steps, how it stopped).
    trainer, loader, run
        The configurations it ran with (method defaults filled in).
    train, validation
        The loaders it trained and validated on (``validation`` is ``None`` without
        validation rows), for a subclass that trains further (e.g. a fine-tuning pass).
    """

    model: ModelT
    fit: TrainingResult
    trainer: TrainerConfig
    loader: LoaderConfig
    run: RunConfig
    train: MinibatchLoader
    validation: MinibatchLoader | None


class TrainedSelector(PanelSelector, Generic[ModelT]):
    """Base of the selectors that train one network and read the panel from it.

    :meth:`select` runs the recipe: fill in the configurations and the method's trainer
    defaults (:meth:`resolve_configs`), check the panel size, build the loaders and the
    network (:meth:`build_model`, seeded by the run), train it with a checkpoint in
    ``work_dir`` (:meth:`checkpoint_path`) and the selector's fingerprint, and hand the
    trained network to :meth:`panel_from_model`. A subclass implements those two hooks and
    sets ``trainer_defaults``; one whose training is not a single fit (LassoNet's path)
    overrides :meth:`select` and reuses the pieces it needs.

    An instance holds what every :class:`PanelSelector` holds (panel size, seed, gene
    constraints, hyperparameters); the class attributes name the checkpoint file in
    ``work_dir`` and the method's trainer defaults. Training leaves nothing on the
    instance: what a subclass keeps (e.g. ``model_``) it sets in :meth:`panel_from_model`.
    """

    trainable: ClassVar[bool] = True
    #: File name of the checkpoint inside ``work_dir``.
    checkpoint_name: ClassVar[str] = CHECKPOINT_NAME
    checkpoint_files: ClassVar[tuple[str, ...]] = (CHECKPOINT_NAME,)
    #: The method's trainer options where the caller left them ``None``.
    trainer_defaults: ClassVar[Mapping[str, Any]] = {}

    def resolve_configs(
        self,
        trainer: TrainerConfig | None,
        loader: LoaderConfig | None,
        run: RunConfig | None,
    ) -> tuple[TrainerConfig, LoaderConfig, RunConfig]:
        """The given configurations or the defaults, with :attr:`trainer_defaults` filled in."""
        trainer, loader, run = self.training_configs(trainer, loader, run)
        defaults = {
            key: value
            for key, value in self.trainer_defaults.items()
            if getattr(trainer, key) is None
        }
        return (replace(trainer, **defaults) if defaults else trainer), loader, run

    def checkpoint_path(self, work_dir: Path | None, *, resume: bool) -> Path | None:
        """Where the checkpoint goes (``None`` without ``work_dir``); says so when there is none to resume."""
        checkpoint = None if work_dir is None else Path(work_dir) / self.checkpoint_name
        if resume and (checkpoint is None or not checkpoint.exists()):
            logger.info(
                "%s: no checkpoint to resume from%s; starting afresh",
                self.method,
                "" if checkpoint is None else f" at {checkpoint}",
            )
        return checkpoint

    def build_model(self, n_vars: int, *, seed: int) -> ModelT:
        """The untrained network for a store of ``n_vars`` genes, initialised from ``seed``."""
        raise NotImplementedError(f"{type(self).__name__} builds no single network")

    def panel_from_model(self, store: Store, trained: TrainedModel[ModelT]) -> PanelResult:
        """The panel read from the trained network."""
        raise NotImplementedError(f"{type(self).__name__} reads no panel from a single network")

    def train_model(
        self,
        store: Store,
        *,
        trainer: TrainerConfig | None = None,
        loader: LoaderConfig | None = None,
        run: RunConfig | None = None,
        work_dir: Path | None = None,
        resume: bool = False,
    ) -> TrainedModel[ModelT]:
        """Build the network and train it on ``store`` (best weights by validation loss)."""
        trainer, loader, run = self.resolve_configs(trainer, loader, run)
        self.check_panel_size(store)
        train, validation = training_loaders(store, loader=loader, run=run, method=self.method)
        model = self.build_model(store.n_vars, seed=run.seed)
        checkpoint = self.checkpoint_path(work_dir, resume=resume)
        fit = Trainer(
            trainer, run=run, checkpoint_path=checkpoint, fingerprint=self.fingerprint()
        ).fit(model, train, validation, resume=resume)
        return TrainedModel(model, fit, trainer, loader, run, train, validation)

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
        """Train the network (:meth:`train_model`) and return its panel (:meth:`panel_from_model`)."""
        trained = self.train_model(
            store, trainer=trainer, loader=loader, run=run, work_dir=work_dir, resume=resume
        )
        return self.panel_from_model(store, trained)
