"""Passes over a benchmark or a finished run that call a model: stances, categorize,
judge-check and guard (the run itself is `mtmcs.engine`, the dataset builder `mtmcs.build`).

Each pass calls its model through `mtmcs.engine.calls.Caller`, so each keeps a store and a
rerun on the same output makes no call. The pure pieces they use (prompts, parsers,
summaries) live in `mtmcs.protocol`, `mtmcs.scoring` and `mtmcs.guardrails`.
"""
