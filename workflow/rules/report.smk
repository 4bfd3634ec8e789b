# Aggregate every evaluated model into one table, then draw the report.


rule aggregate:
    input:
        linear=linear_curve_tables,
        decoders=decoder_metrics,
    output:
        runs=f"{REPORT_DIR}/runs.tsv",
    params:
        results=subpath(output.runs, ancestor=2),
    log:
        f"{LOGS}/aggregate/aggregate.log",
    benchmark:
        f"{BENCHMARKS}/aggregate/aggregate.tsv"
    conda:
        "../../envs/genesel.yaml"
    threads: 1
    script:
        "../scripts/aggregate.py"


rule report:
    input:
        runs=f"{REPORT_DIR}/runs.tsv",
        transfer=transfer_tables,
    output:
        index=report(f"{REPORT_DIR}/index.html", caption="../report/index.rst", category="Report"),
        curves_png=report(f"{REPORT_DIR}/curves.png", caption="../report/curves.rst", category="Report"),
        curves_tsv=report(f"{REPORT_DIR}/curves.tsv", caption="../report/curves_table.rst", category="Report"),
        landmark_match=report(
            f"{REPORT_DIR}/landmark_match.tsv", caption="../report/landmark_match.rst", category="Report"
        ),
    params:
        results=subpath(output.index, ancestor=2),
        out_dir=subpath(output.index, parent=True),
        options=report_options,
        transfer=transfer_report_options,
    log:
        f"{LOGS}/report/report.log",
    benchmark:
        f"{BENCHMARKS}/report/report.tsv"
    conda:
        "../../envs/genesel.yaml"
    threads: 1
    shell:
        "genesel report --results {params.results} --runs {input.runs} --out {params.out_dir} "
        "{params.options} {params.transfer} > {log} 2>&1"
