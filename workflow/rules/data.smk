# The input compendium and the preprocessed store.


rule simulate:
    output:
        compendium=COMPENDIUM,
    params:
        options=simulate_options,
    log:
        f"{LOGS}/simulate/simulate.log",
    benchmark:
        f"{BENCHMARKS}/simulate/simulate.tsv"
    conda:
        "../../envs/genesel.yaml"
    threads: 1
    shell:
        "genesel simulate --out {output.compendium} {params.options} > {log} 2>&1"


# A checkpoint: the landmark panel's size is read from the store once it exists.
checkpoint preprocess:
    input:
        compendium=preprocess_input,
    output:
        store=STORE,
    params:
        options=preprocess_options,
    log:
        f"{LOGS}/preprocess/preprocess.log",
    benchmark:
        f"{BENCHMARKS}/preprocess/preprocess.tsv"
    conda:
        "../../envs/genesel.yaml"
    threads: 1
    shell:
        "genesel preprocess {input.compendium} --out {output.store} {params.options} > {log} 2>&1"
