"""`interp organism ...`: commands about the embedded model organism.

`interp organism eval` (options: the fields of `interp.organism.config.OrganismEvalConfig`)
prints the planted-behaviour table. It is the 'organism' suites of `interp eval`, so it is
registered on this app by `interp.evals.cli.register`: the organism supplies the held-out data
(`interp.organism.behaviours`) and never imports the evaluation layer.
"""

import typer

app = typer.Typer(
    help="The embedded model organism and its planted behaviours.", no_args_is_help=True
)
