# Panel selection: one job per method x panel size x seed. Trained selectors and
# baselines are separate rules so that a profile can give only the former a GPU.


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
