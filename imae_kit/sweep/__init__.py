"""Sweeps: one recipe trained over a grid of overrides (beta, seeds, ...), collected into a table and figures.

PAPER.md's experiments are sweeps: beta in [1, 10] with gamma = 2 beta, 10 seeds per beta on MNIST and
Fashion-MNIST and 8 on dSprites, each plotted as a median with an 80% band across seeds. A sweep
directory holds

- ``sweep.json``: the recipe, the fixed ``--set`` overrides, the grid and the budget (written once);
- ``runs/NNN-path=value-...``: one ordinary run directory per grid point (``imae-kit run`` layout);
- ``sweep.csv`` and ``sweep.md``: one row per point, the grid values, the status and every headline
  number of its ``eval.json`` (or, without evaluation, each term's last logged value);
- ``figures/sweep.png``: each number against the swept axis, median and 10-90% band over the other axes.

Running the same sweep command again continues it: finished points are kept, interrupted ones resume
from their checkpoint, diverged ones are reported and left alone. ``collect`` draws several sweeps (one
per objective, say) on the same axes, as PAPER.md Figures 3 and 5 do; with ``pool`` the sweeps of one
experiment run in several directories (a seed each, say) are one series, and ``summary_table`` prints the
medians and ranges the figure draws.

Spreading a sweep (no scheduler of our own; any launcher does it):

- ``jobs``: N points at once on one machine, each a subprocess ``python -m imae_kit run ...`` (or ``eval``)
  with cores / N torch threads, its output in ``logs/NNN-....log``;
- ``shard = (I, N)``: only the points whose index i (0-based, the ``NNN`` of their directory) has
  i % N == I - 1, so N workers (a SLURM array, GNU parallel, a shell loop) share one sweep directory on a
  shared file system.

A worker claims a point by an advisory lock (``.claims/NNN-....lock``, flock, released by the OS if the
worker dies) for as long as it trains it, and re-reads the point's status once it holds the claim: a point
claimed by another worker is skipped, a finished one kept, so no point is ever trained twice at once, and
workers whose shards overlap (or the same command started twice) divide the points between them. The
tables and figures read every point's run directory, so they show the union of what all workers did.

    grid.py     the swept overrides, points, shards, the spec (sweep.json)
    claims.py   advisory locks that claim a point; threads per job
    runner.py   the sweep directory and running its points
    tables.py   the table and the band figures
"""

from imae_kit.sweep.claims import default_threads
from imae_kit.sweep.grid import (SWEEP_FORMAT, SEED_PATH, GridAxis, split_top_level, SweepPoint, grid_points, parse_shard, in_shard, SweepSpec)
from imae_kit.sweep.runner import (SPEC_FILE, POINTS_DIR, CLAIMS_DIR, LOGS_DIR, TABLE_CSV, TABLE_MD, FIGURE_FILE, Sweep)
from imae_kit.sweep.tables import (BAND, SHORT_NAMES, metric_columns, write_table, format_cell, default_axis, quantile, band_series, sweep_figure, Series, series, pool_key, pooled_label, parse_only, pick_metrics, resolve_axis, summary_table)

__all__ = ["BAND", "CLAIMS_DIR", "FIGURE_FILE", "GridAxis", "LOGS_DIR", "POINTS_DIR", "SEED_PATH", "SHORT_NAMES", "SPEC_FILE", "SWEEP_FORMAT", "Series", "Sweep", "SweepPoint", "SweepSpec", "TABLE_CSV", "TABLE_MD", "band_series", "default_axis", "default_threads", "format_cell", "grid_points", "in_shard", "metric_columns", "parse_only", "parse_shard", "pick_metrics", "pool_key", "pooled_label", "quantile", "resolve_axis", "series", "split_top_level", "summary_table", "sweep_figure", "write_table"]
