# genesel workflow: preprocess -> select (method x panel size x seed) -> impute (decoder)
# -> evaluate -> aggregate -> report. Run with a profile, e.g.
#   snakemake --profile profiles/local --configfile config/config.yaml
# The rules live in workflow/rules/; the config is checked against workflow/schemas/.

from snakemake.utils import min_version, validate

min_version("8.20")


# The embedded demo config, unless the command line names its own (--configfile replaces
# it rather than being merged into it, so a GEO config never inherits demo settings).
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


validate(config, schema="workflow/schemas/config.schema.yaml")


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/select.smk"
include: "workflow/rules/impute.smk"
include: "workflow/rules/transfer.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/batch.smk"


# The report, and every panel, imputer and metrics file: Snakemake ignores a deleted
# intermediate file, so listing them here makes deleting one rerun it and its dependents.
rule all:
    input:
        report=f"{REPORT_DIR}/index.html",
        curves=f"{REPORT_DIR}/curves.png",
        panels=sweep_panel_files,
        landmark_panel=landmark_panel_files,
        linear=linear_curve_tables,
        decoders=sweep_decoder_files,
        landmark_decoders=landmark_decoder_files,
    default_target: True
