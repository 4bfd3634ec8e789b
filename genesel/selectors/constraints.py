"""Genes a panel must contain (``include``) or must not contain (``exclude``).

A lab rarely designs a panel from nothing: it already measures some genes (the L1000
landmarks, a vendor's fixed panel) and cannot probe others. :func:`resolve_constraints`
turns the user's gene lists into store column indices, checked against the panel size;
every selector then honours them natively (see docs/methods.md, "Include and exclude"),
and the panel's ``n_genes`` counts the included genes.

A gene list is given as

- ``None`` or an empty list: no constraint;
- the word ``"landmarks"``: the genes flagged ``var["landmark"]``;
- a path of a text file: one gene per line (``#`` comments allowed), or a table with a
  header naming a ``gene_id``, ``gene``, ``symbol`` or ``entrez_id`` column (a ``panel.tsv``
  written by ``genesel select`` works as it is);
- a comma-separated string, or a sequence of strings.

Genes are matched by id (the store's ``var_names``) first, then by symbol (``var["symbol"]``,
case-insensitive).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from genesel.errors import ConfigError, InputFileError

#: The word that stands for the store's landmark genes in an include or exclude list.
LANDMARKS_WORD = "landmarks"
#: Header names of the gene column in an include/exclude table file, in order of preference.
GENE_LIST_COLUMNS = ("gene_id", "gene", "symbol", "entrez_id")
#: How many offending genes an error message names.
N_NAMED = 10

#: A gene list as accepted by :func:`parse_gene_list`.
GeneSpec = str | os.PathLike[str] | Sequence[str] | None


@dataclass(frozen=True)
class GeneConstraints:
    """Resolved include and exclude lists (store column indices).

    Attributes
    ----------
    include
        Genes every panel contains, in the order given (they lead the panel).
    exclude
        Genes no panel contains.
    """

    include: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    exclude: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))

    def __post_init__(self) -> None:
        object.__setattr__(self, "include", np.asarray(self.include, dtype=np.int64).ravel())
        object.__setattr__(self, "exclude", np.asarray(self.exclude, dtype=np.int64).ravel())

    @property
    def empty(self) -> bool:
        """Whether there is no constraint at all."""
        return self.include.size == 0 and self.exclude.size == 0

    def included_mask(self, n_vars: int) -> np.ndarray:
        """Boolean mask (length ``n_vars``) of the included genes."""
        mask = np.zeros(n_vars, dtype=bool)
        mask[self.include] = True
        return mask

    def excluded_mask(self, n_vars: int) -> np.ndarray:
        """Boolean mask (length ``n_vars``) of the excluded genes."""
        mask = np.zeros(n_vars, dtype=bool)
        mask[self.exclude] = True
        return mask

    def candidate_mask(self, n_vars: int) -> np.ndarray:
        """Genes a method may still choose: neither included (already in) nor excluded."""
        return ~(self.included_mask(n_vars) | self.excluded_mask(n_vars))

    def complete(self, ranking: np.ndarray, n_genes: int) -> np.ndarray:
        """The included genes followed by the best-ranked candidates, ``n_genes`` in all.

        ``ranking`` lists gene indices best first (it may hold included or excluded genes;
        they are skipped).
        """
        ranking = np.asarray(ranking, dtype=np.int64)
        allowed = ~np.isin(ranking, np.concatenate([self.include, self.exclude]))
        chosen = ranking[allowed][: n_genes - self.include.size]
        if self.include.size + chosen.size != n_genes:
            raise ConfigError(f"only {chosen.size} candidate genes to complete {self.include.size} included genes to {n_genes}")
        return np.concatenate([self.include, chosen])

    def record(self, var: pd.DataFrame) -> dict[str, list[str]]:
        """The gene ids of both lists, for ``config.json``."""
        ids = var.index.astype(str)
        return {"include": ids[self.include].tolist(), "exclude": ids[self.exclude].tolist()}


def parse_gene_list(spec: GeneSpec, *, what: str = "genes") -> list[str]:
    """The gene names of ``spec`` (see the module docstring), in order, without repeats.

    Raises
    ------
    InputFileError
        A file that cannot be read or holds no gene.
    """
    if spec is None:
        return []
    if isinstance(spec, os.PathLike):
        names = _read_gene_file(Path(spec), what)
    elif isinstance(spec, str):
        text = spec.strip()
        if not text:
            return []
        path = Path(text)
        if text.lower() != LANDMARKS_WORD and "," not in text and path.is_file():
            names = _read_gene_file(path, what)
        else:
            names = [part.strip() for part in text.split(",")]
    else:
        names = [str(part).strip() for part in spec]
    return list(dict.fromkeys(name for name in names if name))


def _read_gene_file(path: Path, what: str) -> list[str]:
    try:
        lines = [line.rstrip("\n") for line in path.read_text().splitlines()]
    except (OSError, UnicodeDecodeError) as error:
        raise InputFileError(path, f"cannot read the {what} list ({error})") from None
    lines = [line for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        raise InputFileError(path, f"the {what} list holds no gene", "one gene id or symbol per line")
    header = [cell.strip().lower() for cell in lines[0].split("\t")]
    column = next((name for name in GENE_LIST_COLUMNS if name in header), None)
    if column is not None:
        position = header.index(column)
        return [cells[position].strip() for cells in (line.split("\t") for line in lines[1:]) if len(cells) > position]
    return [line.split("\t")[0].split(",")[0].strip() for line in lines]


def resolve_genes(names: Sequence[str], var: pd.DataFrame, *, what: str, prefer_landmarks: bool = True) -> np.ndarray:
    """Store column indices of ``names`` (ids first, then symbols, case-insensitive).

    The word ``landmarks`` stands for every gene flagged ``var["landmark"]``. A symbol that
    names several genes gives all of them when ``prefer_landmarks`` is false (an exclusion
    removes the gene whatever copy), else its one landmark copy (the D-GEX universe holds 445
    genes twice, as landmark and as target) or an error.

    Raises
    ------
    ConfigError
        Naming the genes that are not in the data, or symbols that stay ambiguous.
    """
    ids = pd.Index(var.index.astype(str))
    position = pd.Series(np.arange(ids.size), index=ids)
    symbols = var["symbol"].astype(str).str.upper() if "symbol" in var.columns else pd.Series(ids.str.upper(), index=var.index)
    by_symbol = pd.Series(np.arange(ids.size)).groupby(symbols.to_numpy()).apply(list).to_dict()
    landmark = var["landmark"].to_numpy(bool) if "landmark" in var.columns else np.zeros(ids.size, dtype=bool)
    found: list[int] = []
    unknown: list[str] = []
    ambiguous: list[str] = []
    for name in names:
        if name.lower() == LANDMARKS_WORD and name not in position.index:
            flagged = np.flatnonzero(landmark)
            if flagged.size == 0:
                raise ConfigError(f"{what}: the data has no landmark genes (var['landmark'] is all False), so 'landmarks' names none")
            found.extend(flagged.tolist())
        elif name in position.index:
            found.append(int(position[name]))
        elif name.upper() in by_symbol:
            matches = by_symbol[name.upper()]
            if len(matches) > 1 and prefer_landmarks:
                flagged = [m for m in matches if landmark[m]]
                if len(flagged) != 1:
                    ambiguous.append(name)
                    continue
                matches = flagged
            found.extend(matches)
        else:
            unknown.append(name)
    if unknown:
        raise ConfigError(
            f"{what}: {len(unknown)} gene(s) not in the data (matched by gene id, then symbol): {_named(unknown)}; "
            "check the names against the store's var (gene_id, symbol)"
        )
    if ambiguous:
        raise ConfigError(f"{what}: symbol(s) naming several genes of the data: {_named(ambiguous)}; give their gene ids instead")
    return np.asarray(list(dict.fromkeys(found)), dtype=np.int64)


def resolve_constraints(var: pd.DataFrame, n_genes: int, *, include: GeneSpec = None, exclude: GeneSpec = None) -> GeneConstraints:
    """Resolve and check ``include`` and ``exclude`` for a panel of ``n_genes`` genes.

    Raises
    ------
    ConfigError
        A gene both included and excluded, more included genes than ``n_genes``, or fewer
        candidate genes (neither included nor excluded) than the panel still needs; each
        message names the genes or numbers at fault.
    """
    included = resolve_genes(parse_gene_list(include, what="include"), var, what="include")
    excluded = resolve_genes(parse_gene_list(exclude, what="exclude"), var, what="exclude", prefer_landmarks=False)
    ids = var.index.astype(str)
    both = np.intersect1d(included, excluded)
    if both.size:
        raise ConfigError(f"{both.size} gene(s) both included and excluded: {_named(ids[both].tolist())}; remove them from one list")
    if included.size > n_genes:
        raise ConfigError(
            f"{included.size} genes are included but the panel has n_genes={n_genes} (which counts the included genes); "
            f"raise n_genes to at least {included.size} or include fewer genes"
        )
    candidates = len(var) - included.size - excluded.size
    needed = n_genes - included.size
    if candidates < needed:
        raise ConfigError(
            f"the panel needs {needed} genes besides the {included.size} included, but only {candidates} of the data's "
            f"{len(var)} genes are neither included nor excluded ({excluded.size} excluded); lower n_genes or exclude fewer genes"
        )
    return GeneConstraints(included, excluded)


def _named(names: Sequence[Any]) -> str:
    shown = ", ".join(str(n) for n in list(names)[:N_NAMED])
    return shown + (f" and {len(names) - N_NAMED} more" if len(names) > N_NAMED else "")
