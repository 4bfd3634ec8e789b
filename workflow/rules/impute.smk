# Imputation: fit each decoder on each panel, then score it on the held-out split.


rule fit_imputer:
    input:
        store=STORE,
        panel=f"{PANEL_DIR}/panel.tsv",
    output:
        model=f"{IMPUTER_DIR}/{IMPUTER_FILE}",
    params:
        options=decoder_options,
        out_dir=subpath(output.model, parent=True),
    log:
        f"{LOGS}/fit_imputer/{{method}}_k{{n_genes}}_seed{{seed}}_{{decoder}}.log",
    benchmark:
        f"{BENCHMARKS}/fit_imputer/{{method}}_k{{n_genes}}_seed{{seed}}_{{decoder}}.tsv"
    conda:
        "../../envs/genesel.yaml"
    threads: 1
    shell:
        "genesel impute fit --data {input.store} --panel {input.panel} --decoder {wildcards.decoder} "
        "--out {params.out_dir} {params.options} > {log} 2>&1"


rule evaluate:
    input:
        store=STORE,
        model=f"{IMPUTER_DIR}/{IMPUTER_FILE}",
    output:
        metrics=f"{METRICS_DIR}/metrics.json",
        per_gene=f"{METRICS_DIR}/per_gene.tsv",
    params:
        model_dir=subpath(input.model, parent=True),
        split=config["evaluation"]["split"],
    log:
        f"{LOGS}/evaluate/{{method}}_k{{n_genes}}_seed{{seed}}_{{decoder}}.log",
    benchmark:
        f"{BENCHMARKS}/evaluate/{{method}}_k{{n_genes}}_seed{{seed}}_{{decoder}}.tsv"
    conda:
        "../../envs/genesel.yaml"
    threads: 1
    shell:
        "genesel evaluate --data {input.store} --model {params.model_dir} --split {params.split} "
        "--out {output.metrics} > {log} 2>&1"
