# Batched jobs (config batch_runs: true, as in the demo): one job per method selects all its
# panels (every size with every seed, in one process: the store read and torch imported once),
# and one job per decoder other than the linear one fits and scores every panel. Each writes a
# list of its files last, which the DAG follows instead of the per-panel files. Without
# batch_runs the per-panel rules of select.smk and impute.smk run instead (one job each, as a
# cluster or a GPU wants). Both pass --resume-if-same, as the per-panel rules do: a killed
# job continues each run from its checkpoint unless it was made with other data or options.


rule select_method_panels:
    input:
        store=STORE,
        moments=select_moments,
        constraints=select_constraint_files,
    output:
        panels=PANEL_LIST,
    params:
        runs=batch_select_options,
        options=select_options,
        constraints=select_constraints,
        paths=batch_panel_paths,
    log:
        f"{LOGS}/select_method_panels/{{method}}.log",
    benchmark:
        f"{BENCHMARKS}/select_method_panels/{{method}}.tsv"
    wildcard_constraints:
        method=method_pattern(TRAINED_METHODS + BASELINE_METHODS),
    conda:
        "../../envs/genesel.yaml"
    threads: 1
    shell:
        "genesel select --data {input.store} --method {wildcards.method} {params.runs} --resume-if-same {params.options} "
        "{params.constraints} > {log} 2>&1 "
        "&& printf '%s\\n' {params.paths} > {output.panels}"


rule fit_decoder_panels:
    input:
        store=STORE,
        panels=lambda wildcards: panel_files(sweep_panels() + landmark_panels()),
    output:
        metrics=DECODER_LIST,
    params:
        runs=batch_decoder_options,
        paths=lambda wildcards: [run[2] for run in batch_decoder_runs(wildcards)],
        split=config["evaluation"]["split"],
    wildcard_constraints:
        decoder=rf"(?!{LINEAR_DECODER}$)[a-z]+",
    log:
        f"{LOGS}/fit_decoder_panels/{{decoder}}.log",
    benchmark:
        f"{BENCHMARKS}/fit_decoder_panels/{{decoder}}.tsv"
    conda:
        "../../envs/genesel.yaml"
    threads: 1
    shell:
        "genesel impute fit --data {input.store} --decoder {wildcards.decoder} --split {params.split} --resume-if-same {params.runs} "
        "> {log} 2>&1 && printf '%s\\n' {params.paths} > {output.metrics}"
