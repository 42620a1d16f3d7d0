"""MTMCS in other tools: the benchmark as an inspect_ai task, and finished runs as inspect logs.

`inspect_task` registers the `mtmcs` task (found through the `inspect_ai` entry point, so
`inspect eval mtmcs/mtmcs` runs it); `inspect_export` writes a finished `mtmcs run` as an
inspect log for `inspect view`. Both play and score with `mtmcs.protocol` and compute their
figures with `mtmcs.scoring.metrics`, exactly as `mtmcs run` does. The modules that need
inspect_ai (the optional extra `inspect`) import it at their top: nothing here imports them
unless inspect is wanted.
"""
