"""Reports over finished runs: leaderboard tables, plots and a per-dialogue export.

`mtmcs report RUN_DIR...` reads each run's `summary.json` (and `dialogues.jsonl` for the
export); nothing here calls a model. Plots need the optional `report` extra (matplotlib).
"""
