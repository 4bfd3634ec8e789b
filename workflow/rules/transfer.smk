# Transfer (only when the config sets `transfer`): every panel of this run, with a linear decoder
# fitted on this run's store, imputing the test split of another data set, against that data
# set's own landmark panel; the report adds a "Transfer to another data set" section.

if "transfer" in config:

    rule preprocess_transfer:
        input:
            data=config["transfer"]["path"],
        output:
            store=TRANSFER_STORE,
        params:
            options=transfer_preprocess_options,
        log:
            f"{LOGS}/preprocess_transfer/preprocess_transfer.log",
        benchmark:
            f"{BENCHMARKS}/preprocess_transfer/preprocess_transfer.tsv"
        conda:
            "../../envs/genesel.yaml"
        threads: 1
        shell:
            "genesel preprocess {input.data} --out {output.store} {params.options} > {log} 2>&1"

    rule transfer:
        input:
            store=STORE,
            data=transfer_data,
            panels=transfer_panels,
        output:
            table=TRANSFER_TABLE,
        params:
            standardize=config["transfer"]["standardize"],
            split=config["evaluation"]["split"],
        log:
            f"{LOGS}/transfer/transfer.log",
        benchmark:
            f"{BENCHMARKS}/transfer/transfer.tsv"
        conda:
            "../../envs/genesel.yaml"
        threads: 1
        script:
            "../scripts/transfer.py"
