"""Build real expression data sets (~100-700 samples) for panel-size benchmarks, with provenance.

Every set comes from a package that ships its data: Debian ``r-bioc-*`` data packages
(read in pure Python: ``pyreadr`` for plain data frames, ``rdata`` for S4 objects such as
an ExpressionSet; no R session is started) or a PyPI package's bundled files. Nothing is
downloaded at run time.

Each set is written to ``<out>/<name>.h5ad`` (temporary name, then rename) as samples x
genes with

* ``X``: log expression (log2 for arrays and bulk RNA-seq, natural ``log1p`` for single
  cells, as scanpy's ``sc.pp.log1p``);
* ``var_names``: Entrez Gene ids (strings). Probes / features of one gene are averaged
  (in log space); features that map to no Entrez id or to several are dropped. The
  mapping is Bioconductor's ``org.Hs.eg.db`` (Debian ``r-bioc-org.hs.eg.db``, read as the
  SQLite file it ships);
* ``var["symbol"]`` (current symbol in ``org.Hs.eg.db``), ``var["entrez_id"]``,
  ``var["landmark"]`` (L1000 landmark: Entrez id first, then current symbol, then the
  2016 LINCS symbol), ``var["n_features"]`` (features averaged);
* ``obs["group"]``: the natural grouping (subject, time, subtype) where one exists, plus
  the source's sample annotation;
* ``uns["provenance"]``: source package and version, file inside it, annotation sources
  and every transformation applied.

Gene filter (all sets): drop genes with non-finite values or zero variance; RNA-seq and
single-cell sets also drop genes detected in fewer than 5% of samples; then keep the
``--top-genes`` (default 5000) genes of highest variance on the log scale (0 keeps all).

Usage::

    python benchmarks/real_data.py --out benchmarks/data [--only all_leukemia ...] [--top-genes 5000]

Needs the optional extra ``bench`` (``pip install -e .[bench]``: pyreadr, rdata, celltypist)
and the Debian packages named in ``SOURCES``; a missing one is reported in one line with
the command that installs it, and the other sets are still built.
"""

from __future__ import annotations

import argparse
import logging
import sqlite3
import subprocess
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing

from genesel.io.atomic import atomic_output  # noqa: E402

logger = logging.getLogger("real_data")

R_LIBRARY = Path("/usr/lib/R/site-library")
LANDMARKS = REPO / "genesel/data/l1000_landmarks_978.tsv"
SCRIPT = "benchmarks/real_data.py"
MIN_DETECTED_FRACTION = 0.05


class MissingSource(RuntimeError):
    """A package that a set is built from is not installed."""


# --------------------------------------------------------------------------- sources


@dataclass
class Source:
    """Where a package's file lies and which version it is."""

    package: str
    version: str
    installer: str  # "debian" or "pypi"
    path: Path

    def record(self, file: str) -> dict[str, str]:
        return {
            "package": self.package,
            "version": self.version,
            "installer": self.installer,
            "file": file,
        }


def r_package(name: str, deb: str, library: Path = R_LIBRARY) -> Source:
    """Locate the installed R package ``name`` shipped by Debian package ``deb``."""
    root = library / name
    description = root / "DESCRIPTION"
    if not description.is_file():
        raise MissingSource(
            f"R package {name!r} not found under {library}; install it with: "
            f"apt-get update && apt-get install --no-install-recommends {deb}"
        )
    fields = dict(
        line.split(":", 1)
        for line in description.read_text(errors="replace").splitlines()
        if ":" in line and not line[0].isspace()
    )
    version = fields.get("Version", "unknown").strip()
    try:
        deb_version = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", deb], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        deb_version = "not installed by dpkg"
    return Source(f"{name} (Bioconductor; Debian {deb} {deb_version})", version, "debian", root)


def pypi_package(name: str, module: str | None = None) -> Source:
    """Locate the installed PyPI distribution ``name`` (importable as ``module``)."""
    import importlib.util

    try:
        version = importlib.metadata.version(name)
        spec = importlib.util.find_spec(module or name)
    except (importlib.metadata.PackageNotFoundError, ModuleNotFoundError):
        spec = None
    if spec is None or spec.origin is None:
        raise MissingSource(
            f"PyPI package {name!r} is not installed; install it with: python -m pip install {name}"
        )
    return Source(name, version, "pypi", Path(spec.origin).parent)


def _require(module: str, pip_name: str | None = None):
    try:
        return __import__(module)
    except ImportError:
        raise MissingSource(
            f"Python module {module!r} is missing; install it with: python -m pip install {pip_name or module}"
            " (or pip install -e .[bench])"
        ) from None


def read_r_frames(path: Path) -> dict[str, pd.DataFrame]:
    """Plain data frames / matrices of an .rda file (pyreadr)."""
    pyreadr = _require("pyreadr")
    return dict(pyreadr.read_r(str(path)))


def read_r_objects(path: Path) -> dict:
    """Every object of an .rda file, S4 included (rdata); lazy promises become ``None``."""
    rdata = _require("rdata")
    from rdata.conversion import SimpleConverter
    from rdata.parser import RObjectType

    class Converter(SimpleConverter):
        def _convert_next(self, obj):  # noqa: ANN001, ANN202
            info = getattr(obj, "info", None)
            if info is not None and info.type == RObjectType.PROM:
                return None
            return super()._convert_next(obj)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Missing constructor for R class ..." (S4 classes)
        return Converter().convert(rdata.parser.parse_file(path))


def _matrix(array) -> pd.DataFrame:  # noqa: ANN001
    """An xarray DataArray (rows x columns) from rdata as a frame."""
    rows, cols = array.dims
    return pd.DataFrame(
        np.asarray(array.values, dtype=np.float64),
        index=array[rows].values.astype(str),
        columns=array[cols].values.astype(str),
    )


# --------------------------------------------------------------------------- gene ids


class OrgHs:
    """Gene id maps of Bioconductor's ``org.Hs.eg.db`` (its SQLite file, read only)."""

    def __init__(self, library: Path = R_LIBRARY) -> None:
        self.source = r_package("org.Hs.eg.db", "r-bioc-org.hs.eg.db", library)
        db = self.source.path / "extdata/org.Hs.eg.sqlite"
        self._con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        self.symbol = dict(
            self._query("SELECT g.gene_id, i.symbol FROM genes g JOIN gene_info i USING (_id)")
        )
        self.egsource = dict(self._query("SELECT name, value FROM metadata")).get(
            "EGSOURCEDATE", "unknown"
        )

    def _query(self, sql: str) -> list[tuple[str, str]]:
        return self._con.execute(sql).fetchall()

    def record(self) -> dict[str, str]:
        rec = self.source.record("extdata/org.Hs.eg.sqlite")
        rec["entrez_gene_source_date"] = self.egsource
        return rec

    @staticmethod
    def _unique(pairs: list[tuple[str, str]]) -> dict[str, str]:
        """key -> Entrez id, for keys that name exactly one gene."""
        frame = pd.DataFrame(pairs, columns=["key", "entrez"]).drop_duplicates()
        counts = frame["key"].value_counts()
        frame = frame[frame["key"].map(counts) == 1]
        return dict(zip(frame["key"], frame["entrez"], strict=True))

    def from_accession(self) -> dict[str, str]:
        return self._unique(
            self._query("SELECT a.accession, g.gene_id FROM accessions a JOIN genes g USING (_id)")
        )

    def from_ensembl(self) -> dict[str, str]:
        return self._unique(
            self._query("SELECT e.ensembl_id, g.gene_id FROM ensembl e JOIN genes g USING (_id)")
        )

    def from_symbol(self) -> dict[str, str]:
        """Official symbol first; otherwise an alias that names exactly one gene."""
        alias = self._unique(
            self._query("SELECT a.alias_symbol, g.gene_id FROM alias a JOIN genes g USING (_id)")
        )
        official = {s: e for e, s in self.symbol.items()}
        return {**alias, **official}


def collapse_to_genes(
    expr: pd.DataFrame, entrez: pd.Series
) -> tuple[pd.DataFrame, pd.Series, dict[str, int]]:
    """Average the features (columns of ``expr``) of each Entrez gene.

    ``entrez`` maps feature id -> Entrez id (missing: unmapped, dropped). Returns the
    samples x genes frame, the number of features per gene and counts for provenance.
    """
    ids = pd.Series(expr.columns.map(entrez), index=expr.columns)
    keep = ids.notna().to_numpy()
    kept = expr.loc[:, keep]
    genes = kept.T.groupby(ids[keep].to_numpy(), sort=True).mean().T
    n_features = ids[keep].value_counts().reindex(genes.columns).astype(np.int64)
    stats = {
        "features": int(expr.shape[1]),
        "features_mapped": int(keep.sum()),
        "genes": int(genes.shape[1]),
    }
    return genes, n_features, stats


# --------------------------------------------------------------------------- landmarks


def landmark_table(org: OrgHs, path: Path = LANDMARKS) -> pd.DataFrame:
    """The 978 L1000 landmarks: Entrez id, 2016 LINCS symbol, current org.Hs.eg.db symbol."""
    table = pd.read_csv(path, sep="\t", dtype=str)
    table["symbol_current"] = table["entrez_id"].map(org.symbol)
    return table


def flag_landmarks(entrez: pd.Series, symbol: pd.Series, landmarks: pd.DataFrame) -> np.ndarray:
    """Landmark flags: Entrez id first, then current symbol, then the 2016 symbol."""
    by_id = entrez.isin(set(landmarks["entrez_id"].dropna()))
    by_current = symbol.isin(set(landmarks["symbol_current"].dropna()))
    by_2016 = symbol.isin(set(landmarks["symbol"].dropna()))
    return (by_id | by_current | by_2016).to_numpy()


# --------------------------------------------------------------------------- assembly


@dataclass
class Built:
    """One set before filtering: log expression (samples x Entrez genes) and annotation."""

    expr: pd.DataFrame
    obs: pd.DataFrame
    n_features: pd.Series
    platform: str
    units: str
    sources: list[dict[str, str]]
    steps: list[str]
    counts_like: bool  # RNA-seq / single cell: apply the detection filter
    group: str | None = None
    detected: pd.DataFrame | None = None  # features detected (> 0) per sample, by gene
    extra: dict[str, str] = field(default_factory=dict)


def finish(
    name: str, built: Built, org_symbol: dict[str, str], landmarks: pd.DataFrame, top_genes: int
) -> ad.AnnData:
    """Filter genes, annotate and attach provenance."""
    expr, steps = built.expr, list(built.steps)
    values = expr.to_numpy(dtype=np.float64)
    keep = np.isfinite(values).all(axis=0) & (values.var(axis=0) > 0)
    steps.append(f"dropped {int((~keep).sum())} genes with non-finite values or zero variance")
    if built.counts_like and built.detected is not None:
        frac = built.detected.reindex(columns=expr.columns).to_numpy().mean(axis=0)
        low = frac < MIN_DETECTED_FRACTION
        steps.append(
            f"dropped {int((keep & low).sum())} genes detected in < {MIN_DETECTED_FRACTION:.0%} of samples"
        )
        keep &= ~low
    expr = expr.loc[:, keep]
    if top_genes and expr.shape[1] > top_genes:
        var = expr.to_numpy().var(axis=0)
        order = np.sort(np.argsort(-var, kind="stable")[:top_genes])
        steps.append(f"kept the {top_genes} genes of highest variance (of {expr.shape[1]})")
        expr = expr.iloc[:, order]
    else:
        steps.append(
            f"kept all {expr.shape[1]} remaining genes (top-genes limit {top_genes or 'off'})"
        )

    entrez = pd.Series(expr.columns.astype(str), index=expr.columns.astype(str))
    symbol = entrez.map(org_symbol).fillna("")
    var = pd.DataFrame(
        {
            "symbol": symbol.to_numpy(),
            "entrez_id": entrez.to_numpy(),
            "landmark": flag_landmarks(entrez, symbol, landmarks),
            "n_features": built.n_features.reindex(expr.columns).to_numpy(np.int64),
        },
        index=pd.Index(entrez.to_numpy(), name="entrez_id"),
    )
    obs = _clean_obs(built.obs.reindex(expr.index))
    if built.group is not None:
        obs["group"] = obs[built.group].astype(str).astype("category")
    adata = ad.AnnData(X=expr.to_numpy(dtype=np.float32), obs=obs, var=var)
    adata.obs_names = expr.index.astype(str)
    adata.uns["provenance"] = {
        "name": name,
        "script": SCRIPT,
        "sources": {f"{i}": rec for i, rec in enumerate(built.sources)},
        "platform": built.platform,
        "units": built.units,
        "group": built.group or "",
        "transformations": steps,
        "landmark_match": "L1000 978 (genesel/data/l1000_landmarks_978.tsv): Entrez id, then current org.Hs.eg.db symbol, then 2016 LINCS symbol",
        **built.extra,
    }
    return adata


def _clean_obs(obs: pd.DataFrame) -> pd.DataFrame:
    """Sample annotation with h5ad-friendly column names and types."""
    out = pd.DataFrame(index=obs.index.astype(str))
    for col in obs.columns:
        name = str(col).replace("/", "_")
        values = obs[col]
        if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            out[name] = pd.to_numeric(values, errors="coerce").astype(np.float64).to_numpy()
        else:
            text = values.astype(object).where(values.notna(), "").astype(str)
            out[name] = text.replace({"nan": "", "<NA>": "", "None": ""}).astype("category")
    return out


# --------------------------------------------------------------------------- the sets


def build_all_leukemia(org: OrgHs, library: Path) -> Built:
    """ALL: 128 adult acute lymphoblastic leukaemia arrays (Chiaretti et al.), HG-U95Av2, RMA."""
    src = r_package("ALL", "r-bioc-all", library)
    annot = r_package("AnnotationDbi", "r-bioc-annotationdbi", library)
    eset = read_r_objects(src.path / "data/ALL.rda")["ALL"]
    probes = _matrix(eset.assayData.frame["exprs"]).T  # samples x probes
    pheno = eset.phenoData.data
    pheno.index = pheno.index.astype(str)
    acc = pd.read_csv(
        annot.path / "extdata/hgu95av2_ID",
        sep="\t",
        header=None,
        names=["probe", "accession"],
        dtype=str,
    )
    probe_entrez = acc.set_index("probe")["accession"].map(org.from_accession())
    expr, n_features, stats = collapse_to_genes(probes, probe_entrez)
    return Built(
        expr=expr,
        obs=pheno,
        n_features=n_features,
        platform="Affymetrix HG-U95Av2 (GPL8300)",
        units="log2 RMA (as shipped)",
        sources=[
            src.record("data/ALL.rda (ExpressionSet 'ALL', exprs)"),
            annot.record("extdata/hgu95av2_ID (probe -> GenBank accession)"),
            org.record(),
        ],
        steps=[
            "read ExpressionSet with the PyPI package rdata (no R)",
            f"probe -> GenBank accession (AnnotationDbi hgu95av2_ID) -> Entrez (org.Hs.eg.db accessions; accessions of several genes dropped): "
            f"{stats['features_mapped']} of {stats['features']} probes mapped",
            f"averaged the probes of each Entrez gene (log2 scale): {stats['genes']} genes",
        ],
        counts_like=False,
        group="BT",
        extra={"group_meaning": "B/T-cell lineage and stage (B, B1-B4, T, T1-T4)"},
    )


def build_flu_challenge(org: OrgHs, library: Path) -> Built:
    """qusage fluExample: 252 arrays, 17 subjects x up to 15 times after H3N2 challenge."""
    src = r_package("qusage", "r-bioc-qusage", library)
    frames = read_r_frames(src.path / "data/fluExample.RData")
    genes = frames["eset.full"].T  # samples x symbols
    meta = frames["flu.meta"].set_index("SampleID")
    expr, n_features, stats = collapse_to_genes(
        genes, pd.Series(genes.columns, index=genes.columns).map(org.from_symbol())
    )
    return Built(
        expr=expr,
        obs=meta,
        n_features=n_features,
        platform="Affymetrix HG-U133A 2.0 (GSE30550, Huang et al. 2011), gene-level as shipped",
        units="log2 (as shipped)",
        sources=[src.record("data/fluExample.RData (eset.full, flu.meta)"), org.record()],
        steps=[
            "read with pyreadr",
            f"symbol -> Entrez (org.Hs.eg.db official symbol, else an alias naming one gene): {stats['features_mapped']} of {stats['features']} mapped",
            f"averaged symbols of the same Entrez gene: {stats['genes']} genes",
        ],
        counts_like=False,
        group="Subject",
        extra={"group_meaning": "subject (17); obs['Hours'] is time after inoculation"},
    )


def build_hsmm(org: OrgHs, library: Path) -> Built:
    """HSMMSingleCell: 271 single myoblasts, 0/24/48/72 h of differentiation (Trapnell et al. 2014)."""
    src = r_package("HSMMSingleCell", "r-bioc-hsmmsinglecell", library)
    fpkm = read_r_frames(src.path / "data/HSMM_expr_matrix.rda")[
        "HSMM_expr_matrix"
    ].T  # cells x Ensembl
    sheet = read_r_frames(src.path / "data/HSMM_sample_sheet.rda")["HSMM_sample_sheet"]
    fpkm.columns = fpkm.columns.str.replace(r"\.\d+$", "", regex=True)
    fpkm = fpkm.T.groupby(level=0).sum().T  # PAR duplicates (ENSG..._PAR_Y) are rare; sum same ids
    detected = fpkm > 0
    logged = np.log1p(fpkm)
    ens = pd.Series(logged.columns, index=logged.columns).map(org.from_ensembl())
    expr, n_features, stats = collapse_to_genes(logged, ens)
    det, _, _ = collapse_to_genes(detected.astype(np.float64), ens)
    return Built(
        expr=expr,
        obs=sheet,
        n_features=n_features,
        platform="single-cell RNA-seq, Fluidigm C1 + Illumina (Cufflinks FPKM)",
        units="natural log1p(FPKM)",
        sources=[
            src.record("data/HSMM_expr_matrix.rda, data/HSMM_sample_sheet.rda"),
            org.record(),
        ],
        steps=[
            "read with pyreadr; stripped Ensembl version suffixes",
            "log1p(FPKM) (natural log)",
            f"Ensembl -> Entrez (org.Hs.eg.db; ids of several genes dropped): {stats['features_mapped']} of {stats['features']} mapped",
            f"averaged features of the same Entrez gene (log scale): {stats['genes']} genes",
        ],
        counts_like=True,
        detected=det > 0,
        group="Hours",
        extra={"group_meaning": "hours in differentiation medium (0, 24, 48, 72)"},
    )


def build_geuvadis(org: OrgHs, library: Path) -> Built:
    """DEGreport humanGender: 85 lymphoblastoid RNA-seq samples (GEUVADIS, Tuscans), counts."""
    src = r_package("DEGreport", "r-bioc-degreport", library)
    se = read_r_objects(src.path / "data/humanGender.rda")["humanGender"]
    counts = _matrix(se.assays.data.listData[0]).T  # samples x Ensembl
    cols = se.colData.listData
    obs = pd.DataFrame(
        {str(k): np.asarray(v) for k, v in cols.items()},
        index=np.asarray(se.colData.rownames).astype(str),
    )
    obs = obs.rename(columns={"group": "sex"})
    cpm = counts.div(counts.sum(axis=1), axis=0) * 1e6
    logged = np.log2(cpm + 1.0)
    ens = pd.Series(logged.columns, index=logged.columns).map(org.from_ensembl())
    expr, n_features, stats = collapse_to_genes(logged, ens)
    det, _, _ = collapse_to_genes((counts > 0).astype(np.float64), ens)
    return Built(
        expr=expr,
        obs=obs,
        n_features=n_features,
        platform="bulk RNA-seq, Illumina (GEUVADIS lymphoblastoid cell lines)",
        units="log2(CPM + 1), CPM over the genes shipped",
        sources=[
            src.record("data/humanGender.rda (SummarizedExperiment 'humanGender', counts)"),
            org.record(),
        ],
        steps=[
            "read SummarizedExperiment with the PyPI package rdata (no R)",
            "counts -> CPM (library size = sum over the shipped genes) -> log2(CPM + 1)",
            f"Ensembl -> Entrez (org.Hs.eg.db; ids of several genes dropped): {stats['features_mapped']} of {stats['features']} mapped",
            f"averaged features of the same Entrez gene: {stats['genes']} genes",
        ],
        counts_like=True,
        detected=det > 0,
        group="sex",
        extra={"group_meaning": "sex (the package's 'group' column)"},
    )


def build_pbmc68k(org: OrgHs, library: Path) -> Built:
    """scanpy's bundled pbmc68k_reduced: 700 PBMCs, log-normalised .raw (not the scaled X)."""
    src = pypi_package("scanpy")
    import scanpy as sc

    adata = sc.datasets.pbmc68k_reduced().raw.to_adata()
    logged = pd.DataFrame(
        np.asarray(
            adata.X.todense() if hasattr(adata.X, "todense") else adata.X, dtype=np.float64
        ),
        index=adata.obs_names,
        columns=adata.var_names,
    )
    sym = pd.Series(logged.columns, index=logged.columns).map(org.from_symbol())
    expr, n_features, stats = collapse_to_genes(logged, sym)
    det, _, _ = collapse_to_genes((logged > 0).astype(np.float64), sym)
    return Built(
        expr=expr,
        obs=adata.obs,
        n_features=n_features,
        platform="single-cell RNA-seq, 10x Genomics (Zheng et al. 2017, 68k PBMC subsample)",
        units="natural log1p(normalised counts), as in .raw",
        sources=[src.record("scanpy/datasets/10x_pbmc68k_reduced.h5ad (.raw)"), org.record()],
        steps=[
            "sc.datasets.pbmc68k_reduced().raw.to_adata() (bundled file, no download)",
            f"symbol -> Entrez (org.Hs.eg.db official symbol, else an alias naming one gene): {stats['features_mapped']} of {stats['features']} mapped",
            f"averaged symbols of the same Entrez gene: {stats['genes']} genes",
        ],
        counts_like=True,
        detected=det > 0,
        group="bulk_labels",
        extra={"group_meaning": "cell type label (bulk_labels)"},
    )


def build_celltypist_sample(org: OrgHs, library: Path) -> Built:
    """celltypist's bundled sample_cell_by_gene.csv: 559 immune cells, raw counts."""
    src = pypi_package("celltypist")
    path = src.path / "data/samples/sample_cell_by_gene.csv"
    if not path.is_file():
        raise MissingSource(
            f"{path} is missing from celltypist {src.version}; reinstall it: python -m pip install celltypist"
        )
    counts = pd.read_csv(path, index_col=0).astype(np.float64)
    counts = counts.T.groupby(level=0).sum().T
    logged = np.log1p(counts.div(counts.sum(axis=1), axis=0) * 1e4)
    sym = pd.Series(logged.columns, index=logged.columns).map(org.from_symbol())
    expr, n_features, stats = collapse_to_genes(logged, sym)
    det, _, _ = collapse_to_genes((counts > 0).astype(np.float64), sym)
    return Built(
        expr=expr,
        obs=pd.DataFrame({"total_counts": counts.sum(axis=1)}, index=counts.index),
        n_features=n_features,
        platform="single-cell RNA-seq (celltypist sample, immune cells)",
        units="natural log1p(counts per 10k)",
        sources=[src.record("celltypist/data/samples/sample_cell_by_gene.csv"), org.record()],
        steps=[
            "read the bundled csv (no download)",
            "counts per 10k per cell -> log1p (as sc.pp.normalize_total(target_sum=1e4) + sc.pp.log1p)",
            f"symbol -> Entrez (org.Hs.eg.db official symbol, else an alias naming one gene): {stats['features_mapped']} of {stats['features']} mapped",
            f"averaged symbols of the same Entrez gene: {stats['genes']} genes",
        ],
        counts_like=True,
        detected=det > 0,
        group=None,
        extra={"group_meaning": "none shipped (no cell annotation in the sample)"},
    )


SOURCES: dict[str, Callable[[OrgHs, Path], Built]] = {
    "all_leukemia": build_all_leukemia,  # apt: r-bioc-all, r-bioc-annotationdbi
    "flu_challenge": build_flu_challenge,  # apt: r-bioc-qusage
    "hsmm_myoblast": build_hsmm,  # apt: r-bioc-hsmmsinglecell
    "geuvadis_tsi": build_geuvadis,  # apt: r-bioc-degreport
    "pbmc68k_reduced": build_pbmc68k,  # pip: scanpy
    "celltypist_sample": build_celltypist_sample,  # pip: celltypist
}


def summary_row(path: Path, adata: ad.AnnData) -> dict[str, object]:
    prov = adata.uns["provenance"]
    first = prov["sources"]["0"]
    return {
        "name": prov["name"],
        "samples": adata.n_obs,
        "genes": adata.n_vars,
        "landmarks": int(adata.var["landmark"].sum()),
        "group": prov["group"] or "-",
        "n_groups": int(adata.obs["group"].nunique()) if "group" in adata.obs else 0,
        "units": prov["units"],
        "source": f"{first['package'].split(' (')[0]} {first['version']}",
        "path": str(path),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/data")
    parser.add_argument("--only", nargs="+", choices=sorted(SOURCES), help="build only these sets")
    parser.add_argument(
        "--top-genes", type=int, default=5000, help="keep this many most variable genes (0: all)"
    )
    parser.add_argument(
        "--r-library", type=Path, default=R_LIBRARY, help="where Debian installs R packages"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")

    try:
        org = OrgHs(args.r_library)
    except MissingSource as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    landmarks = landmark_table(org)
    rows, failed = [], []
    for name in args.only or SOURCES:
        try:
            built = SOURCES[name](org, args.r_library)
        except MissingSource as err:
            print(f"error: {name}: {err}", file=sys.stderr)
            failed.append(name)
            continue
        adata = finish(name, built, org.symbol, landmarks, args.top_genes)
        adata.uns["provenance"]["top_genes"] = int(args.top_genes)
        path = args.out / f"{name}.h5ad"
        with atomic_output(path) as tmp:
            adata.write_h5ad(tmp, compression="gzip")
        logger.info("wrote %s (%d x %d)", path, adata.n_obs, adata.n_vars)
        rows.append(summary_row(path, adata))
    if rows:
        with pd.option_context("display.width", 200, "display.max_colwidth", 60):
            print(pd.DataFrame(rows).to_string(index=False))
    if failed:
        print(f"not built: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
