# Imputation. The linear decoder: the store's moments once, then every panel's fit and test
# errors in one job. Other decoders: fit each on each panel, then score it on the held-out split
# (--resume-if-same: a killed MLP fit continues from its checkpoint when it was made with the
# same data, panel and options). A decoder's config entry reaches `genesel impute fit` as
# --param name=value (its hyperparameters) and the training flags (epochs, batch_size,
# learning_rate): genesel.impute.decoders.decoder_flags, through common.smk's decoder_settings.


rule moments:
    input:
        store=STORE,
    output:
        moments=MOMENTS,
    log:
        f"{LOGS}/moments/moments.log",
    benchmark:
        f"{BENCHMARKS}/moments/moments.tsv"
    conda:
        "../../envs/genesel.yaml"
    threads: 1
    shell:
        "genesel moments --data {input.store} --out {output.moments} > {log} 2>&1"


rule linear_curve:
    input:
        store=STORE,
        moments=MOMENTS,
        panels=linear_curve_panels,
    output:
        table=LINEAR_TABLE,
    params:
        panels=linear_curve_panel_paths,
        random=random_options,
        options=linear_options,
        split=config["evaluation"]["split"],
        out_dir=subpath(output.table, parent=True),
    log:
        f"{LOGS}/linear_curve/linear_curve.log",
    benchmark:
        f"{BENCHMARKS}/linear_curve/linear_curve.tsv"
    conda:
        "../../envs/genesel.yaml"
    threads: 1
    shell:
        "genesel curve --data {input.store} --moments {input.moments} --panels {params.panels} {params.random} "
        "--split {params.split} --out {params.out_dir} {params.options} > {log} 2>&1"


rule fit_imputer:
    input:
        store=STORE,
        panel=f"{PANEL_DIR}/panel.tsv",
    output:
        model=f"{IMPUTER_DIR}/{IMPUTER_FILE}",
        metrics=f"{METRICS_DIR}/metrics.json",
        per_gene=f"{METRICS_DIR}/per_gene.tsv",
        per_sample=f"{METRICS_DIR}/per_sample.tsv",
    params:
        options=decoder_options,
        out_dir=subpath(output.model, parent=True),
        split=config["evaluation"]["split"],
    wildcard_constraints:
        decoder=r"(?!linear$)[a-z]+",
    log:
        f"{LOGS}/fit_imputer/{{method}}_k{{n_genes}}_seed{{seed}}_{{decoder}}.log",
    benchmark:
        f"{BENCHMARKS}/fit_imputer/{{method}}_k{{n_genes}}_seed{{seed}}_{{decoder}}.tsv"
    conda:
        "../../envs/genesel.yaml"
    threads: 1
    shell:
        "genesel impute fit --data {input.store} --panel {input.panel} --decoder {wildcards.decoder} "
        "--out {params.out_dir} --metrics {output.metrics} --split {params.split} --resume-if-same {params.options} > {log} 2>&1"
