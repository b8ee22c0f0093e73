"""Safety evaluations with confidence intervals, and activation monitors.

Names load on first use (`interp.lazy`), so `--help` imports no torch.
"""

from interp.lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    "evaluate": "interp.evals.run:evaluate",
    "evaluate_models": "interp.evals.run:evaluate_models",
    "compare": "interp.evals.run:compare",
    "parse_suites": "interp.evals.run:parse_suites",
    "EvalReport": "interp.evals.run:EvalReport",
    "Row": "interp.evals.suites:Row",
    "SUITES": "interp.evals.suites:SUITES",
    "Estimate": "interp.evals.stats:Estimate",
    "wilson": "interp.evals.stats:wilson",
    "bootstrap_mean": "interp.evals.stats:bootstrap_mean",
    "load_suite_file": "interp.evals.userfile:load_suite_file",
    "SuiteError": "interp.evals.userfile:SuiteError",
    "report_figures": "interp.evals.figures:report_figures",
    "Monitor": "interp.evals.monitor:Monitor",
    "train_monitor": "interp.evals.monitor:train_monitor",
    "evaluate_monitor": "interp.evals.monitor:evaluate_monitor",
    "save_monitor": "interp.evals.monitor:save_monitor",
    "load_monitor": "interp.evals.monitor:load_monitor",
    "screen": "interp.evals.monitor:screen",
    "guarded_generate": "interp.evals.monitor:guarded_generate",
    "keyword_flag": "interp.evals.monitor:keyword_flag",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
