"""The README's tour runs verbatim: every shell and Python block, in a scratch folder.

The blocks are taken from README.md as they stand and run in order in a folder that links
to this checkout's files (``Snakefile``, ``config/``, ``profiles/``, ...), as a reader's
clone would look, with ``.venv/bin/activate`` putting this interpreter's ``bin`` first on
``PATH`` (the way ``make demo`` does). Consecutive shell blocks share one shell, as they
would share a reader's terminal. A block is left out only when an HTML comment right above
it says ``not run by tests/test_readme.py`` and why (the set-up, ``make demo`` itself, the GEO
data, a SLURM cluster); none of the tour's blocks may be.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
#: The marker that leaves a block out, in an HTML comment right above it.
SKIP_MARKER = "not run by tests/test_readme.py"
SHELL_LANGUAGES = ("bash", "sh", "console", "shell")
#: The folder every tour output goes to (ignored by git).
TOUR_DIR = "tour"
#: Entries of the checkout not linked into the scratch folder (outputs, caches, the venv).
NOT_LINKED = {
    ".git",
    ".venv",
    TOUR_DIR,
    "results",
    "scratch",
    ".snakemake",
    ".pytest_cache",
    "__pycache__",
}
BLOCK = re.compile(
    r"(?:<!--(?P<comment>[^>]*)-->[ \t]*\n)?^```(?P<language>[\w-]*)[ \t]*\n(?P<body>.*?)^```[ \t]*$",
    re.MULTILINE | re.DOTALL,
)


@dataclass(frozen=True)
class Block:
    """One fenced code block of the README."""

    language: str
    body: str
    section: str
    skip_reason: str | None

    @property
    def shell(self) -> bool:
        return self.language in SHELL_LANGUAGES


def readme_blocks(text: str) -> list[Block]:
    """The fenced code blocks of ``text`` in order, with their ``##`` section and skip reason."""
    blocks = []
    for match in BLOCK.finditer(text):
        headings = re.findall(r"^## (.+)$", text[: match.start()], re.MULTILINE)
        comment = (match.group("comment") or "").strip()
        reason = comment.split(SKIP_MARKER, 1)[1].strip(" :") if SKIP_MARKER in comment else None
        blocks.append(
            Block(
                match.group("language"),
                match.group("body"),
                headings[-1] if headings else "",
                reason,
            )
        )
    return blocks


def test_block_extraction_sees_every_fence_and_marker() -> None:
    text = (
        "## A\n```bash\necho a\n```\n\n<!-- not run by tests/test_readme.py: the demo -->\n```bash\nmake demo\n```\n"
        "## B\n```python\nprint(1)\n```\n```\nplain\n```\n"
    )
    blocks = readme_blocks(text)
    assert [(b.language, b.body, b.section, b.skip_reason) for b in blocks] == [
        ("bash", "echo a\n", "A", None),
        ("bash", "make demo\n", "A", "the demo"),
        ("python", "print(1)\n", "B", None),
        ("", "plain\n", "B", None),
    ]


def test_only_marked_blocks_outside_the_tour_are_left_out() -> None:
    blocks = [b for b in readme_blocks(README.read_text()) if b.shell or b.language == "python"]
    skipped = [b for b in blocks if b.skip_reason is not None]
    assert all(b.skip_reason for b in skipped), "say why a block is not run"
    # set-up, the full make demo, GEO + GPU, a CMap GCTX file, SLURM: nothing else is left out
    assert len(skipped) <= 5, [b.body for b in skipped]
    in_tour = [b for b in skipped if "tour" in b.section.lower()]
    assert all("make demo" in b.body for b in in_tour), (
        "every block of the tour runs, but the full `make demo` run"
    )
    tour = [b for b in blocks if "tour" in b.section.lower() and b.skip_reason is None]
    assert any(b.language == "python" for b in tour) and sum(b.shell for b in tour) >= 3


def test_tour_outputs_go_to_one_ignored_folder() -> None:
    ignored = [line.strip() for line in (REPO / ".gitignore").read_text().splitlines()]
    assert f"/{TOUR_DIR}/" in ignored or f"{TOUR_DIR}/" in ignored
    tour = [
        b
        for b in readme_blocks(README.read_text())
        if "tour" in b.section.lower() and b.skip_reason is None
    ]
    outputs = []
    for block in tour:
        if block.shell:
            words = shlex.split(block.body.replace("\\\n", " "), comments=True)
            outputs += [words[i + 1] for i, word in enumerate(words[:-1]) if word == "--out"]
        for pair in re.findall(r"write_h5ad\('([^']+)'\)|save=\"([^\"]+)\"", block.body):
            outputs += [m for m in pair if m]
    assert len(outputs) >= 8 and all(o.startswith(f"{TOUR_DIR}/") for o in outputs), outputs


def _scratch(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A folder that looks like a clone of this checkout, and the environment to run in it."""
    root = tmp_path / "clone"
    root.mkdir()
    for entry in REPO.iterdir():
        if entry.name not in NOT_LINKED and not entry.name.endswith(".egg-info"):
            (root / entry.name).symlink_to(entry)
    bin_dir = Path(sys.executable).parent  # not resolved: a venv's python is a link
    activate = root / ".venv" / "bin" / "activate"
    activate.parent.mkdir(parents=True)
    activate.write_text(f'export PATH={shlex.quote(str(bin_dir))}:"$PATH"\n')
    env = dict(os.environ)
    env.update(
        PYTHONPATH=os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]),
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        MPLBACKEND="Agg",
        PYTHONWARNINGS="ignore::FutureWarning,ignore::DeprecationWarning",
    )
    return root, env


def _run(command: list[str], root: Path, env: dict[str, str], what: str) -> None:
    done = subprocess.run(
        command, cwd=root, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, (
        f"{what} failed (exit {done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    )


@pytest.mark.slow
def test_readme_tour_runs_verbatim(tmp_path: Path) -> None:
    blocks = [
        b
        for b in readme_blocks(README.read_text())
        if (b.shell or b.language == "python") and b.skip_reason is None
    ]
    root, env = _scratch(tmp_path)
    before = {p.name for p in root.iterdir()}
    started = time.perf_counter()
    session: list[str] = []

    def flush() -> None:
        if session:
            _run(
                ["bash", "-euo", "pipefail", "-c", "\n".join(session)],
                root,
                env,
                "README shell blocks\n" + "\n".join(session),
            )
            session.clear()

    for block in blocks:
        if block.shell:
            session.append(block.body)
        else:
            flush()
            _run(
                [sys.executable, "-c", block.body], root, env, f"README python block\n{block.body}"
            )
    flush()
    elapsed = time.perf_counter() - started

    tour = root / TOUR_DIR
    assert {p.name for p in root.iterdir()} - before <= {TOUR_DIR, ".snakemake"}, (
        "the tour writes only under tour/"
    )
    import anndata

    full = anndata.read_h5ad(tour / "full.h5ad")
    measured = anndata.read_h5ad(tour / "measured.h5ad")
    assert measured.shape == (100, 50) and full.shape == (100, 1000)
    assert int(full.var["measured"].sum()) == 50
    assert "# converged=true" in (tour / "panels" / "cae_k50" / "panel.tsv").read_text(), (
        "the README says the CAE converges"
    )
    metrics = json.loads((tour / "metrics" / "cae_k50" / "metrics.json").read_text())
    assert 0 < metrics["mse_imputed"] < 1, "the panel must beat predicting each gene's mean"
    assert (tour / "curve" / "linear_runs.tsv").stat().st_size > 0
    assert (tour / "panel_curve.png").stat().st_size > 1000
    print(f"README tour: {elapsed:.1f} s")
