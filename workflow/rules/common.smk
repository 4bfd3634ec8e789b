# Helpers of the genesel workflow: paths, the planned sweep, and command-line options built
# from the (validated) config. Rules only reference these functions; they hold no logic.
# The method lists come from genesel.selectors, the results layout from
# genesel/report/layout.py (which the report reads) and the sweep from genesel/sweep_plan.py
# (which genesel.tl.panel_curve iterates).

import json
import os
import shlex
from pathlib import Path

from genesel.errors import InputFileError, StoreVersionError
from genesel.impute.decoders import decoder_flags
from genesel.report import layout
from genesel.selectors.base import get_selector_class
from genesel.selectors.methods import available_methods
from genesel.store import Store
from genesel.sweep_plan import LANDMARK_METHOD, LINEAR_DECODER, RANDOM_METHOD, plan_sweep

#: Methods that train a network (their rule can be given a GPU) and the others.
TRAINED_METHODS = tuple(m for m in available_methods() if get_selector_class(m).trainable)
BASELINE_METHODS = tuple(m for m in available_methods() if m not in TRAINED_METHODS)

RESULTS = f"results/{config['run']}"
LOGS = f"{RESULTS}/{layout.LOGS_DIR}"
BENCHMARKS = f"{RESULTS}/{layout.BENCHMARKS_DIR}"
COMPENDIUM = f"{RESULTS}/{layout.COMPENDIUM}"
STORE = f"{RESULTS}/{layout.STORE}"
PANEL_DIR = f"{RESULTS}/{layout.PANEL_DIR}"
IMPUTER_DIR = f"{RESULTS}/{layout.IMPUTER_DIR}"
METRICS_DIR = f"{RESULTS}/{layout.METRICS_DIR}"
MOMENTS = f"{RESULTS}/{layout.MOMENTS}"
LINEAR_TABLE = f"{RESULTS}/{layout.LINEAR_TABLE}"
REPORT_DIR = f"{RESULTS}/{layout.REPORT_DIR}"
IMPUTER_FILE = layout.IMPUTER_FILE
#: config batch_runs: one job per method selects all its panels, one job per decoder fits them all.
BATCH_RUNS = config.get("batch_runs", False)
PANEL_LIST = f"{RESULTS}/{layout.PANEL_LIST}"
DECODER_LIST = f"{RESULTS}/{layout.DECODER_LIST}"


def method_pattern(methods):
    """Regular expression matching exactly the given method names."""
    return "|".join(m.replace("-", r"\-") for m in methods)


wildcard_constraints:
    n_genes=r"\d+",
    seed=r"\d+",
    decoder=r"[a-z]+",


# -- the input ---------------------------------------------------------------


def check_input_config():
    """Fail early, naming the keys, unless exactly one of input.simulate and input.path is set."""
    source = config["input"]
    if ("simulate" in source) == ("path" in source):
        raise ValueError(
            "config: set exactly one of input.simulate (simulated demo compendium) and "
            "input.path (a real compendium such as bgedv2_QNORM.gctx); "
            f"got {sorted(source) or 'neither'}"
        )


check_input_config()


def preprocess_input(wildcards):
    """The file genesel preprocess reads: the simulated compendium or config input.path."""
    if "simulate" in config["input"]:
        return COMPENDIUM
    return config["input"]["path"]


def simulate_options(wildcards):
    """Options of genesel simulate from config input.simulate."""
    settings = config["input"]["simulate"]
    options = ["--n-obs", str(settings["n_obs"]), "--seed", str(settings["seed"])]
    if settings.get("n_vars") is not None:
        options += ["--n-vars", str(settings["n_vars"])]
    return shlex.join(options)


def preprocess_options(wildcards):
    """Options of genesel preprocess from config preprocess (and input.format)."""
    options = ["--seed", str(config["preprocess"]["seed"])]
    if config["input"].get("format"):
        options += ["--format", config["input"]["format"]]
    options += cli_options(config["preprocess"]["options"])
    return shlex.join(options)


def cli_options(settings):
    """Turn {name: value} into --name value (lists as repeated values, true as a bare flag)."""
    options = []
    for name, value in settings.items():
        flag = f"--{name.replace('_', '-')}"
        if value is True:
            options.append(flag)
        elif value is False or value is None:
            continue
        elif isinstance(value, list):
            options += [flag, *map(str, value)]
        else:
            options += [flag, str(value)]
    return options


# -- the sweep -----------------------------------------------------------------


def method_seeds(method):
    """Seeds of a method: its own seeds setting, else the top-level seeds."""
    return config["methods"][method].get("seeds", config["seeds"])


_gene_counts = {}


def store_gene_counts():
    """Landmark genes and all genes of the store (known once preprocess has run)."""
    path = checkpoints.preprocess.get().output.store
    stat = os.stat(path)
    key = (path, stat.st_mtime_ns, stat.st_size)
    if key not in _gene_counts:
        with Store.open(path) as store:
            _gene_counts[key] = (int(store.landmark_mask.sum()), store.n_vars)
    return _gene_counts[key]


def sweep_plan(methods):
    """The planned panels of the given configured methods (genesel.sweep_plan): each method at
    each panel size with its seeds, the landmark panel at its own size, the random panels the
    linear curve draws."""
    return plan_sweep(
        {method: method_seeds(method) for method in methods},
        config["panel_sizes"],
        decoders=config["decoders"],
        gene_counts=store_gene_counts,
        around_landmarks=config["reference"]["sizes_around_landmarks"],
        random_panels=config["reference"]["random_panels"],
    )


def panel_sizes():
    """config panel_sizes, plus the landmark count and +-25% of it (reference.sizes_around_landmarks;
    known once preprocess has run)."""
    return list(sweep_plan([]).sizes)


def linear_decoders():
    """The configured decoders scored from the moments (the linear one)."""
    return [d for d in config["decoders"] if d == LINEAR_DECODER]


def trained_decoders():
    """The configured decoders fitted and evaluated per panel (all but the linear one)."""
    return [d for d in config["decoders"] if d != LINEAR_DECODER]


def sweep_panels():
    """(method, n_genes, seed) of every selected panel except the landmark panel (planned apart:
    its size waits for the store, the others' need not)."""
    methods = [m for m in config["methods"] if m != LANDMARK_METHOD]
    return [(r.method, r.n_genes, r.seed) for r in sweep_plan(methods).selected]


def landmark_panels():
    """(method, n_genes, seed) of the landmark panel (its size is read from the store)."""
    methods = [m for m in config["methods"] if m == LANDMARK_METHOD]
    return [(r.method, r.n_genes, r.seed) for r in sweep_plan(methods).selected]


def panel_paths(chosen):
    """panel.tsv of the given panels."""
    return [f"{PANEL_DIR}/panel.tsv".format(method=m, n_genes=k, seed=s) for m, k, s in chosen]


def panel_files(chosen):
    """The files that stand for the given panels in the DAG: their panel.tsv, or with batch_runs
    the panel list of each method (its batched job writes all of the method's panels)."""
    if BATCH_RUNS:
        return sorted({PANEL_LIST.format(method=m) for m, _, _ in chosen})
    return panel_paths(chosen)


def method_runs(method):
    """(sizes, seeds) of a batched selection job: every size with every seed of the method."""
    chosen = [p for p in sweep_panels() + landmark_panels() if p[0] == method]
    return sorted({k for _, k, _ in chosen}), sorted({s for _, _, s in chosen})


def batch_panel_paths(wildcards):
    """panel.tsv of every panel of one batched selection job, in the order genesel select runs them."""
    sizes, seeds = method_runs(wildcards.method)
    return panel_paths([(wildcards.method, k, s) for k in sizes for s in seeds])


def sweep_panel_files(wildcards):
    """panel.tsv of every panel but the landmark panel (targets of rule all)."""
    return panel_files(sweep_panels())


def landmark_panel_files(wildcards):
    """panel.tsv of the landmark panel."""
    return panel_files(landmark_panels())


def linear_panels():
    """(method, n_genes, seed) of every panel the linear curve scores (random panels are drawn in the job)."""
    return [p for p in sweep_panels() + landmark_panels() if p[0] != RANDOM_METHOD]


def linear_curve_panels(wildcards):
    """Input files of the linear curve: its panels (or with batch_runs their methods' panel lists)."""
    return panel_files(linear_panels())


def linear_curve_panel_paths(wildcards):
    """panel.tsv of every panel the linear curve scores, as `genesel curve --panels` takes them."""
    return panel_paths(linear_panels())


def decoder_files_of(chosen):
    """Imputer and metrics files of the per-panel decoders on the given panels."""
    files = []
    for method, n_genes, seed in chosen:
        for decoder in trained_decoders():
            keys = dict(method=method, n_genes=n_genes, seed=seed, decoder=decoder)
            files += [f"{IMPUTER_DIR}/{IMPUTER_FILE}".format(**keys), f"{METRICS_DIR}/metrics.json".format(**keys)]
    return sorted(set(files))


def decoder_lists():
    """With batch_runs, the metrics list of each per-panel decoder's one job."""
    return [DECODER_LIST.format(decoder=d) for d in trained_decoders()]


def sweep_decoder_files(wildcards):
    """Imputer and metrics files of the per-panel decoders, landmark panel aside: targets of
    rule all, so that deleting one (say a panel.tsv) reruns it and what depends on it."""
    return decoder_lists() if BATCH_RUNS else decoder_files_of(sweep_panels())


def landmark_decoder_files(wildcards):
    """Imputer and metrics files of the per-panel decoders on the landmark panel."""
    return [] if BATCH_RUNS else decoder_files_of(landmark_panels())


def decoder_metrics_paths(wildcards):
    """metrics.json of every per-panel decoder run."""
    files = decoder_files_of(sweep_panels()) + decoder_files_of(landmark_panels())
    return [f for f in files if f.endswith("metrics.json")]


def decoder_metrics(wildcards):
    """Input files of the aggregation for the per-panel decoders: their metrics.json (or with
    batch_runs each decoder's metrics list)."""
    return decoder_lists() if BATCH_RUNS else decoder_metrics_paths(wildcards)


def batch_decoder_runs(wildcards):
    """(panel.tsv, model directory, metrics.json, seed) of every fit of one batched decoder job."""
    runs = []
    for method, n_genes, seed in sweep_panels() + landmark_panels():
        keys = dict(method=method, n_genes=n_genes, seed=seed, decoder=wildcards.decoder)
        runs.append(
            (f"{PANEL_DIR}/panel.tsv".format(**keys), IMPUTER_DIR.format(**keys), f"{METRICS_DIR}/metrics.json".format(**keys), seed)
        )
    return runs


def linear_curve_tables(wildcards):
    """The linear curve's table, when the linear decoder is configured."""
    return [LINEAR_TABLE] if linear_decoders() else []


def random_options(wildcards):
    """Options of genesel curve for the random-panel band."""
    if RANDOM_METHOD not in config["methods"]:
        return ""
    sizes = [str(k) for k in panel_sizes()]
    return shlex.join(["--random-panels", str(config["reference"]["random_panels"]), "--random-sizes", *sizes])


def linear_options(wildcards):
    """Options of genesel curve from config decoders.linear."""
    settings = config["decoders"].get(LINEAR_DECODER) or {}
    return shlex.join(cli_options(settings))


# -- options of the package's commands -------------------------------------------


#: Methods that compute from the store's moments (a selector's ``uses_moments``).
MOMENTS_METHODS = tuple(m for m in available_methods() if get_selector_class(m).uses_moments)


def select_moments(wildcards):
    """The shared moments file for methods (or --refine) that use it; nothing otherwise."""
    settings = config["methods"][wildcards.method]
    return [MOMENTS] if wildcards.method in MOMENTS_METHODS or settings.get("refine") else []


def select_options(wildcards):
    """Training options and --param KEY=VALUE pairs of genesel select for one method."""
    settings = config["methods"][wildcards.method]
    options = []
    if wildcards.method in TRAINED_METHODS:
        options += ["--epochs", str(settings["epochs"]), "--batch-size", str(settings["batch_size"])]
        options += ["--lr", str(settings["learning_rate"])]
        if settings.get("min_steps") is not None:
            options += ["--min-steps", str(settings["min_steps"])]
    for key, value in settings["params"].items():
        options += ["--param", f"{key}={json.dumps(value)}"]
    if settings.get("refine"):
        options.append("--refine")
    if select_moments(wildcards):
        options += ["--moments", MOMENTS]
    return shlex.join(options)


def method_constraint(method, key):
    """A method's include/exclude/gene_cost/default_cost/budget: its own setting, else (null) the top-level one."""
    value = config["methods"][method].get(key)
    return config.get(key) if value is None else value


def select_constraints(wildcards):
    """--include / --exclude / --gene-cost / --default-cost / --budget of genesel select.

    Each is the method's own setting, else (null) the top-level one; [] (gene lists) or
    false (costs, budget) means none for that method.
    """
    options = []
    for key in ("include", "exclude"):
        genes = method_constraint(wildcards.method, key)
        if genes:
            options += [f"--{key}", genes if isinstance(genes, str) else ",".join(genes)]
    for key in ("gene_cost", "default_cost", "budget"):
        value = method_constraint(wildcards.method, key)
        if value is not None and value is not False:
            options += [f"--{key.replace('_', '-')}", str(value)]
    return shlex.join(options)


def select_constraint_files(wildcards):
    """Files the selection reads besides the store: a gene_cost table, include/exclude lists given as files.

    Declared as inputs, so editing one reruns the selections that use it.
    """
    files = []
    for key in ("include", "exclude", "gene_cost"):
        value = method_constraint(wildcards.method, key)
        if isinstance(value, str) and value != "landmarks" and "," not in value and Path(value).is_file():
            files.append(value)
    return files


def decoder_settings(decoder):
    """Options of genesel impute fit from config decoders.<decoder> (the seed aside)."""
    return decoder_flags(config["decoders"][decoder])


def decoder_options(wildcards):
    """Options of genesel impute fit for one decoder, from config decoders.<decoder>."""
    return shlex.join(["--seed", wildcards.seed, *decoder_settings(wildcards.decoder)])


def batch_decoder_options(wildcards):
    """Options of one batched genesel impute fit: every panel with its model directory,
    metrics file and seed, then the decoder's settings."""
    panels, outs, metrics, seeds = zip(*batch_decoder_runs(wildcards))
    options = ["--panel", *panels, "--out", *outs, "--metrics", *metrics, "--seed", *map(str, seeds)]
    return shlex.join(options + decoder_settings(wildcards.decoder))


def batch_select_options(wildcards):
    """--n-genes, --seed and --out of one batched genesel select (--out names each run's folder)."""
    sizes, seeds = method_runs(wildcards.method)
    out = PANEL_DIR.replace("{method}", wildcards.method)
    return shlex.join(["--n-genes", *map(str, sizes), "--seed", *map(str, seeds), "--out", out])


def report_options(wildcards):
    """Options of genesel report: the metric plotted, when the config names one."""
    metric = config["evaluation"]["metric"]
    return "" if metric is None else shlex.join(["--metric", metric])


# -- transfer to another data set (config transfer; workflow/rules/transfer.smk) -------------


TRANSFER_STORE = f"{RESULTS}/{layout.TRANSFER_STORE}"
TRANSFER_TABLE = f"{RESULTS}/{layout.TRANSFER_TABLE}"


def is_genesel_store(path):
    """Whether path is a store written by genesel preprocess (used as it is, whatever its version)."""
    try:
        Store.open(path).close()
    except StoreVersionError:
        return True
    except InputFileError:
        return False
    return True


def transfer_data(wildcards):
    """The other data set's store: config transfer.path if it is a genesel store, else its preprocessed copy."""
    path = config["transfer"]["path"]
    return path if is_genesel_store(path) else TRANSFER_STORE


def transfer_panels(wildcards):
    """panel.tsv of every panel this run selects (random panels only where a decoder needs their files)."""
    return panel_paths(sweep_panels() + landmark_panels())


def transfer_preprocess_options(wildcards):
    """genesel preprocess options for the other data set: this run's, with transfer.format."""
    options = ["--seed", str(config["preprocess"]["seed"])]
    if config["transfer"].get("format"):
        options += ["--format", config["transfer"]["format"]]
    options += cli_options(config["preprocess"]["options"])
    return shlex.join(options)


def transfer_tables(wildcards):
    """The transfer table, when the config sets transfer."""
    return [TRANSFER_TABLE] if "transfer" in config else []


def transfer_report_options(wildcards):
    """genesel report --transfer, when the config sets transfer."""
    return shlex.join(["--transfer", TRANSFER_TABLE]) if "transfer" in config else ""
