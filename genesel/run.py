"""Where and how a fit runs, apart from what it learns: :class:`RunConfig` and the device.

Every fit takes one: the trained ones (selectors, the MLP decoder) beside their
:class:`~genesel.training.TrainerConfig` of hyperparameters, and the ones that do not train
(linear decoders, greedy, QR, HVG) alone. Both are frozen: derive a changed copy with
:func:`dataclasses.replace`, never mutate one in place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from genesel.errors import ConfigError

if TYPE_CHECKING:  # torch is imported on use, so the command line starts without it
    import torch

#: Device names :class:`RunConfig` accepts besides ``"cuda:N"``.
DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class RunConfig:
    """How a fit runs: seed, device, progress bar and precision (not what it learns).

    Parameters
    ----------
    seed
        Seed of weight initialisation, shuffling, dropout and sampling noise.
    device
        ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
    progress
        Show progress bars.
    mixed_precision
        bfloat16 autocast and TF32 matmuls on CUDA; ignored on the CPU.
    """

    seed: int = 0
    device: str = "auto"
    progress: bool = True
    mixed_precision: bool = True

    def __post_init__(self) -> None:
        if self.device not in DEVICES and not str(self.device).startswith("cuda:"):
            raise ConfigError(
                f"device must be one of {', '.join(DEVICES)} or cuda:N, got {self.device!r}",
                parameter="device",
            )


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Return the torch device for ``"auto"`` (CUDA when available) or an explicit name."""
    import torch

    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"device {device!r} requested but CUDA is not available; use device='cpu'",
            parameter="device",
        )
    return torch.device(device)


def configure_precision(device: str | torch.device = "auto") -> None:
    """Allow TF32 matmuls and convolutions on CUDA (process-wide; no effect on the CPU).

    Called once by the entry points (the ``genesel`` command line, the ``genesel.tl``
    functions and the benchmarks) rather than inside a fit, so that library users keep
    control of torch's global flags. Mixed precision itself (bfloat16 autocast) is
    :attr:`RunConfig.mixed_precision`.
    """
    import torch

    if resolve_device(device).type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
