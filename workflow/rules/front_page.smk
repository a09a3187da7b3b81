# The report's front page (the Snakefile's `report:`): the workflow's description followed by the
# headline results and the planner's verdicts, written from the result tables.


rule front_page:
    input:
        headline="results/tables/headline.csv",
        **({"verdicts": "results/tables/planner_verdicts.csv"} if VALIDATED else {}),
    output:
        FRONT_PAGE,
    log:
        "results/logs/front_page.log",
    params:
        description=f"{workflow.basedir}/report/workflow.rst",
    script:
        "../scripts/front_page.py"


localrules:
    front_page,
