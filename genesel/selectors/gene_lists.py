"""Gene lists (``include``, ``exclude``): parse what the user gave and find the genes in the store.

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
from pathlib import Path
from typing import Any, TypeAlias

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
GeneSpec: TypeAlias = str | os.PathLike[str] | Sequence[str] | None


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
        raise InputFileError(
            path, f"the {what} list holds no gene", "one gene id or symbol per line"
        )
    header = [cell.strip().lower() for cell in lines[0].split("\t")]
    column = next((name for name in GENE_LIST_COLUMNS if name in header), None)
    if column is not None:
        position = header.index(column)
        return [
            cells[position].strip()
            for cells in (line.split("\t") for line in lines[1:])
            if len(cells) > position
        ]
    return [line.split("\t")[0].split(",")[0].strip() for line in lines]


def symbol_groups(var: pd.DataFrame) -> dict[str, list[int]]:
    """Upper-case symbol -> the store columns carrying it (gene ids stand in without ``var["symbol"]``)."""
    ids = pd.Index(var.index.astype(str))
    symbols = (
        var["symbol"].astype(str).str.upper().to_numpy()
        if "symbol" in var.columns
        else ids.str.upper().to_numpy()
    )
    return pd.Series(np.arange(ids.size)).groupby(symbols).apply(list).to_dict()


def resolve_genes(
    names: Sequence[str], var: pd.DataFrame, *, what: str, prefer_landmarks: bool = True
) -> np.ndarray:
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
    by_symbol = symbol_groups(var)
    landmark = (
        var["landmark"].to_numpy(bool)
        if "landmark" in var.columns
        else np.zeros(ids.size, dtype=bool)
    )
    found: list[int] = []
    unknown: list[str] = []
    ambiguous: list[str] = []
    for name in names:
        if name.lower() == LANDMARKS_WORD and name not in position.index:
            flagged = np.flatnonzero(landmark)
            if flagged.size == 0:
                raise ConfigError(
                    f"{what}: the data has no landmark genes (var['landmark'] is all False), so 'landmarks' names none",
                    parameter=what,
                )
            found.extend(flagged.tolist())
        elif name in position.index:
            found.append(int(position[name]))
        elif name.upper() in by_symbol:
            matches = by_symbol[name.upper()]
            if len(matches) > 1 and prefer_landmarks:
                landmark_copies = [m for m in matches if landmark[m]]
                if len(landmark_copies) != 1:
                    ambiguous.append(name)
                    continue
                matches = landmark_copies
            found.extend(matches)
        else:
            unknown.append(name)
    if unknown:
        raise ConfigError(
            f"{what}: {len(unknown)} gene(s) not in the data (matched by gene id, then symbol): {named(unknown)}; "
            "check the names against the store's var (gene_id, symbol)",
            parameter=what,
        )
    if ambiguous:
        raise ConfigError(
            f"{what}: symbol(s) naming several genes of the data: {named(ambiguous)}; give their gene ids instead",
            parameter=what,
        )
    return np.asarray(list(dict.fromkeys(found)), dtype=np.int64)


def named(names: Sequence[Any]) -> str:
    """The first :data:`N_NAMED` of ``names``, comma-separated, and how many more there are."""
    shown = ", ".join(str(n) for n in list(names)[:N_NAMED])
    return shown + (f" and {len(names) - N_NAMED} more" if len(names) > N_NAMED else "")
