"""Training steps per second of the CAE and IP-CAE networks at the L1000/GEO scale.

One step = one Gumbel sample of the ``K x D`` selection, forward, backward and an Adam update,
on a random standardised minibatch (what :class:`genesel.trainer.Trainer` does per batch;
bfloat16 autocast on CUDA as the trainer's default). Configurations (``K = 943``,
``D = 10,463``, batch 256 by default):

- ``cae-linear`` / ``cae-mlp``: free ``K x D`` logits, linear or one-hidden-layer decoder;
- ``ipcae-full-P=D`` / ``ipcae-full-P=<p>`` / ``ipcae-diagonal``: indirect logits
  ``Psi W^T + b``; the full form costs ``K*P*D`` multiply-adds per forward (1e11 for P = D),
  the diagonal one ``K*D``.

Examples::

    python benchmarks/selector_steps.py --steps 3 --device cpu --threads 1
    python benchmarks/selector_steps.py --steps 20 --device cuda --update-docs docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import datetime
import platform
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from genesel.selectors.concrete_autoencoder import ConcreteAutoencoder
from genesel.training import adam

DOC_SECTION = "## Selector step time"


@dataclass(frozen=True)
class StepConfig:
    """One network to time."""

    name: str
    options: dict[str, Any]


def configurations(n_genes: int, *, mlp_hidden: int, small_p: int) -> list[StepConfig]:
    """The CAE and IP-CAE variants to time."""
    return [
        StepConfig("cae-linear", {"decoder_hidden": ()}),
        StepConfig(f"cae-mlp({mlp_hidden})", {"decoder_hidden": (mlp_hidden,)}),
        StepConfig("ipcae-full P=D", {"indirect": True, "decoder_hidden": ()}),
        StepConfig(
            f"ipcae-full P={small_p}",
            {"indirect": True, "embedding_dim": small_p, "decoder_hidden": ()},
        ),
        StepConfig(
            "ipcae-diagonal P=D", {"indirect": True, "w_form": "diagonal", "decoder_hidden": ()}
        ),
    ]


def time_steps(
    config: StepConfig,
    *,
    n_genes: int,
    n_nodes: int,
    batch_size: int,
    steps: int,
    warmup: int,
    device: torch.device,
) -> dict[str, Any]:
    """Time ``steps`` training steps after ``warmup`` untimed ones."""
    torch.manual_seed(0)
    model = ConcreteAutoencoder(n_genes, n_nodes, **config.options).to(device)
    model.temperature = 1.0
    optimizer = adam(model.parameters(), 1e-3)
    batches = [torch.randn(batch_size, n_genes, device=device) for _ in range(2)]
    use_amp = device.type == "cuda"

    def step(batch: torch.Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            loss = model.training_loss(batch)
        loss.backward()
        optimizer.step()

    for i in range(warmup):
        step(batches[i % 2])
    _sync(device)
    started = time.perf_counter()
    for i in range(steps):
        step(batches[i % 2])
    _sync(device)
    seconds = (time.perf_counter() - started) / steps
    n_parameters = sum(p.numel() for p in model.parameters())
    selector_parameters = sum(p.numel() for p in model.selector.parameters())
    model = optimizer = batches = None  # free device memory before the next network
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return {
        "name": config.name,
        "seconds_per_step": seconds,
        "steps_per_second": 1.0 / seconds,
        "parameters": n_parameters,
        "selector_parameters": selector_parameters,
    }


def markdown_table(rows: list[dict[str, Any]], *, header: str) -> str:
    """Format timing rows as a markdown block."""
    lines = [
        header,
        "",
        "| network | device | steps/s | ms/step | parameters (selector) |",
        "|---|---|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['name']} | {row['device']} | {row['steps_per_second']:.3g} | {1000 * row['seconds_per_step']:.4g} | "
            f"{row['parameters'] / 1e6:.1f} M ({row['selector_parameters'] / 1e6:.1f} M) |"
        )
    return "\n".join(lines) + "\n"


def update_docs(path: Path, block: str) -> None:
    """Append ``block`` at the end of the ``## Selector step time`` section of ``path``."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if DOC_SECTION not in text:
        text = text.rstrip("\n") + f"\n\n{DOC_SECTION}\n"
    start = text.index(DOC_SECTION)
    following = re.search(r"^## ", text[start + len(DOC_SECTION) :], flags=re.MULTILINE)
    end = len(text) if following is None else start + len(DOC_SECTION) + following.start()
    head, tail = text[:end].rstrip("\n") + "\n\n" + block, text[end:]
    path.write_text(head + ("\n" + tail if tail else ""))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--genes", type=int, default=10463, help="D (default 10,463)")
    parser.add_argument("--nodes", type=int, default=943, help="K (default 943)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per network")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    parser.add_argument(
        "--mlp-hidden", type=int, default=3000, help="hidden width of the MLP decoder"
    )
    parser.add_argument(
        "--small-p", type=int, default=1024, help="the smaller IP-CAE embedding width"
    )
    parser.add_argument(
        "--device", default="all", help="cpu, cuda or all (cpu, and cuda when available)"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument(
        "--only", action="append", help="time only networks whose name contains this (repeatable)"
    )
    parser.add_argument(
        "--update-docs",
        type=Path,
        help="append the table to this markdown file's '## Selector step time' section",
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    devices = [d for d in devices if d != "cuda" or torch.cuda.is_available()]
    rows = []
    for device_name in devices:
        device = torch.device(device_name)
        for config in configurations(args.genes, mlp_hidden=args.mlp_hidden, small_p=args.small_p):
            if args.only and not any(key in config.name for key in args.only):
                continue
            row = time_steps(
                config,
                n_genes=args.genes,
                n_nodes=args.nodes,
                batch_size=args.batch_size,
                steps=args.steps,
                warmup=args.warmup,
                device=device,
            )
            row["device"] = (
                device_name if device_name == "cpu" else torch.cuda.get_device_name(device)
            )
            rows.append(row)
            print(
                f"{row['name']:<24} {row['device']:<10} {row['steps_per_second']:8.3g} steps/s",
                flush=True,
            )
    cpu = platform.processor() or platform.machine()
    header = (
        f"`{' '.join(['python', *sys.argv])}` on {platform.node()} ({cpu}, {torch.get_num_threads()} CPU thread(s), torch {torch.__version__}), "
        f"{datetime.date.today().isoformat()}, commit {_git_commit()}; K = {args.nodes}, D = {args.genes}, batch {args.batch_size}, "
        f"{args.steps} timed step(s) after {args.warmup} warm-up."
    )
    block = markdown_table(rows, header=header)
    print(block)
    if args.update_docs:
        update_docs(args.update_docs, block)
    return 0


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parent,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


if __name__ == "__main__":
    sys.exit(main())
