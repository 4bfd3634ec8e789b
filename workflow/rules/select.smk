# Panel selection: one job per method x panel size x seed. Trained selectors and
# baselines are separate rules so that a profile can give only the former a GPU.


def select_constraints(wildcards):
    """--include / --exclude of genesel select: the method's own lists ([] for none), else the top-level ones."""
    settings = config["methods"][wildcards.method]
    options = []
    for key in ("include", "exclude"):
        genes = settings.get(key)
        if genes is None:
            genes = config.get(key)
        if genes:
            options += [f"--{key}", genes if isinstance(genes, str) else ",".join(genes)]
    return shlex.join(options)


rule train_panel:
    input:
        store=STORE,
        moments=select_moments,
    output:
        panel=f"{PANEL_DIR}/panel.tsv",
        config=f"{PANEL_DIR}/config.json",
    params:
        options=select_options,
        constraints=select_constraints,
        out_dir=subpath(output.panel, parent=True),
    log:
        f"{LOGS}/train_panel/{{method}}_k{{n_genes}}_seed{{seed}}.log",
    benchmark:
        f"{BENCHMARKS}/train_panel/{{method}}_k{{n_genes}}_seed{{seed}}.tsv"
    wildcard_constraints:
        method=method_pattern(TRAINED_METHODS),
    conda:
        "../../envs/genesel.yaml"
    threads: 1
    shell:
        "genesel select --data {input.store} --method {wildcards.method} --n-genes {wildcards.n_genes} "
        "--seed {wildcards.seed} --out {params.out_dir} {params.options} {params.constraints} > {log} 2>&1"


rule select_baseline_panel:
    input:
        store=STORE,
        moments=select_moments,
    output:
        panel=f"{PANEL_DIR}/panel.tsv",
        config=f"{PANEL_DIR}/config.json",
    params:
        options=select_options,
        constraints=select_constraints,
        out_dir=subpath(output.panel, parent=True),
    log:
        f"{LOGS}/select_baseline_panel/{{method}}_k{{n_genes}}_seed{{seed}}.log",
    benchmark:
        f"{BENCHMARKS}/select_baseline_panel/{{method}}_k{{n_genes}}_seed{{seed}}.tsv"
    wildcard_constraints:
        method=method_pattern(BASELINE_METHODS),
    conda:
        "../../envs/genesel.yaml"
    threads: 1
    shell:
        "genesel select --data {input.store} --method {wildcards.method} --n-genes {wildcards.n_genes} "
        "--seed {wildcards.seed} --out {params.out_dir} {params.options} {params.constraints} > {log} 2>&1"
