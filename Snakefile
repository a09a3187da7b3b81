# One-line entry point; the workflow is workflow/Snakefile (`include:` would drop its default target).
workflow.include("workflow/Snakefile", overwrite_default_target=True)
