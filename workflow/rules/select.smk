# Panel selection: one job per method x panel size x seed. Trained selectors and
# baselines are separate rules so that a profile can give only the former a GPU.
# Trained selectors pass --resume-if-same: a killed job (rerun with --rerun-incomplete)
# continues from the checkpoint left in its folder, unless the checkpoint was made with
# other data or options (then it starts afresh; see docs/reliability.md).


rule train_panel:
    input:
        store=STORE,
        moments=select_moments,
        constraints=select_constraint_files,
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
        "--seed {wildcards.seed} --out {params.out_dir} --resume-if-same {params.options} {params.constraints} > {log} 2>&1"


rule select_baseline_panel:
    input:
        store=STORE,
        moments=select_moments,
        constraints=select_constraint_files,
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
