"""The ``imae-kit`` command line: argument handling and printing only (the work lives elsewhere).

Each command imports its machinery when it runs, so ``imae-kit --help`` answers without loading the trainer."""

from __future__ import annotations

import signal
import sys
import warnings
from pathlib import Path
from typing import Any, Sequence

import click
from rich.console import Console
from rich.markup import escape
from rich.syntax import Syntax

from imae_kit.data.commands import data
from imae_kit.errors import WRITE_ERRNOS, DiskWriteError, ImaeKitError, ImaeKitWarning, disk_cause
from imae_kit.runs import REPORT_FILE
from imae_kit.tables import Column, print_table

console = Console()
err_console = Console(stderr=True)


class _Group(click.Group):
    """Turns a user's mistake (ImaeKitError) into one or two lines and exit status 2, never a traceback; so
    is a write the disk refuses (full, read-only, quota) wherever it happens. imae-kit's own warnings
    (ImaeKitWarning) are one line each."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            with warnings.catch_warnings():
                shown = warnings.showwarning
                warnings.showwarning = lambda message, category, *args, **kwargs: (
                    _warn(message) if issubclass(category, ImaeKitWarning) else shown(message, category, *args,
                                                                                       **kwargs))
                return super().invoke(ctx)
        except ImaeKitError as exc:
            _fail(exc)
        except Exception as exc:
            cause = disk_cause(exc)
            if cause is None:
                raise
            _fail(DiskWriteError(cause.filename or "a file", cause,
                                 verb="write" if cause.errno in WRITE_ERRNOS else "access"))


def _fail(exc: ImaeKitError) -> None:
    err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
    sys.exit(exc.exit_code)


def _warn(message: Warning | str) -> None:
    err_console.print(f"[yellow]warning:[/] {escape(str(message))}", highlight=False, soft_wrap=True)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="imae-kit")
def cli() -> None:
    """Information Maximization Autoencoders (IMAE) and baselines, from TOML recipes."""


_THREADS_HELP = ("Torch CPU threads (default: torch's choice). On a small shared machine 1 can be much faster; "
                 "results can differ in the last bits between thread counts.")


def _set_threads(threads: int | None) -> None:
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


@cli.command()
@click.argument("recipe", required=False, type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="PATH=VALUE",
              help="Override a recipe value, e.g. --set vars.beta=4 --set train.lr=1e-4 (repeatable).")
@click.option("--out", type=click.Path(file_okay=False), help="Run directory (default runs/NAME, never overwritten).")
@click.option("--steps", type=click.IntRange(min=1), help="Train for N optimisation steps instead of the recipe's budget.")
@click.option("--resume", type=click.Path(file_okay=False), metavar="RUN_DIR",
              help="Continue a run from its last checkpoint (RECIPE optional: defaults to RUN_DIR/recipe.toml).")
@click.option("--allow-change", "allow_changes", multiple=True, metavar="KEY",
              help="With --resume: allow the recipe to differ in KEY (e.g. train.steps).")
@click.option("--eval/--no-eval", "evaluate", default=None,
              help="Evaluate after training (the default), or skip it. A resume keeps the run's choice unless given.")
@click.option("--quiet/--no-quiet", "-q", "quiet", default=None,
              help="No progress bar (nor progress lines off a terminal). A resume keeps the run's choice "
                   "unless given.")
@click.option("--tensorboard", is_flag=True, help="Also write TensorBoard events (same as --set train.tensorboard=true).")
@click.option("--threads", type=click.IntRange(min=1),
              help=_THREADS_HELP + " A resume keeps the run's choice unless given.")
def run(recipe: str | None, overrides: Sequence[str], out: str | None, steps: int | None, resume: str | None,
        allow_changes: Sequence[str], evaluate: bool | None, quiet: bool | None, tensorboard: bool,
        threads: int | None) -> None:
    """Train RECIPE (then evaluate it and draw its figures) into a run directory.

    run.json records --no-eval, --quiet and --threads; `--resume RUN_DIR` reuses them unless given again."""
    from imae_kit.training import run as run_recipe

    if tensorboard:
        overrides = (*overrides, "train.tensorboard=true")
    outcome = run_recipe(recipe, overrides=tuple(overrides), out=out, steps=steps, resume=resume,
                         allow_changes=tuple(allow_changes), evaluate=evaluate,
                         progress=None if quiet is None else not quiet, threads=threads, console=err_console)
    result = outcome.train
    _print_summary(result)
    if outcome.evaluation is not None:
        _print_eval(outcome.evaluation, title=f"evaluation: {result.run_dir.path}")
        console.print(f"report: {result.run_dir.path / REPORT_FILE}")
    if result.status == "interrupted":
        err_console.print(f"[yellow]stopped at step {result.steps} of {result.total_steps}; continue with:[/] "
                          f"imae-kit run --resume {result.run_dir.path}")
        sys.exit(128 + (result.stop_signal or signal.SIGINT))  # 130 after Ctrl-C, 143 after SIGTERM


def _print_summary(result: Any) -> None:
    console.print(f"[bold]{escape(str(result.run_dir.path))}[/]  ({result.status}, step {result.steps}/"
                  f"{result.total_steps}, {result.seconds:.1f} s)", highlight=False, soft_wrap=True)
    rows = [(label, r["sense"], f"{r['value']:.4f}", f"{r['weight']:g}", f"{r['contribution']:.4f}")
            for label, r in result.final.get("terms", {}).items()]
    if result.final:
        rows.append(("loss", "minimize", f"{result.final['loss']:.4f}", "", ""))
    columns = [Column("term", "name"), Column("sense", "name"), Column("value (nats)", "number"),
               Column("weight", "number"), Column("contribution to loss", "number")]
    print_table(console, columns, rows)


def _print_eval(evaluation: dict[str, Any], title: str) -> None:
    from imae_kit.report import headline

    rows = [(name, value if isinstance(value, str) else f"{value:.4f}") for name, value in headline(evaluation)]
    print_table(console, [Column("measure", "name"), Column("value", "number")], rows, title=title)


@cli.command("eval")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.option("--threads", type=click.IntRange(min=1), help=_THREADS_HELP)
def eval_command(run_dir: str, quiet: bool, threads: int | None) -> None:
    """Evaluate a run directory: eval.json, figures/ and report.md, and print the headline numbers."""
    from imae_kit.runs import RunDir
    from imae_kit.training import evaluate_run

    _set_threads(threads)
    rd = RunDir.open(run_dir)
    evaluation = evaluate_run(rd, progress=not quiet)
    _print_eval(evaluation, title=f"evaluation: {rd.path}")
    console.print(f"report: {rd.path / REPORT_FILE}")


@cli.command()
def terms() -> None:
    """List every registered objective term: sense, what it is, parameters."""
    from imae_kit.compare import term_rows

    columns = [Column("name", "name"), Column("sense", "name"), Column("what it is"), Column("params (default)"),
               Column("from")]
    rows = [[row[k] for k in ("name", "sense", "doc", "params", "module")] for row in term_rows()]
    print_table(console, columns, rows, title="objective terms (value in nats; loss = -sum sign * weight * value)",
                show_lines=True)


@cli.command()
@click.argument("recipe", type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="PATH=VALUE", help="Override a recipe value (repeatable).")
def show(recipe: str, overrides: Sequence[str]) -> None:
    """Print RECIPE resolved (after ${vars} and --set) and its objective as a weighted sum."""
    from imae_kit.precision import resolve_precision
    from imae_kit.recipe import load_recipe
    from imae_kit.training import resolve_device, resolved_recipe_text

    r = load_recipe(recipe, overrides)
    console.print(f"[bold]{r.name}[/]  {r.description}")
    console.print(Syntax(resolved_recipe_text(r), "toml", theme="ansi_dark", background_color="default",
                         word_wrap=True))  # a long line wraps, never cut
    console.print("[bold]objective[/]  " + r.objective_formula(), highlight=False)
    monitored = [t.label for t in r.objective.terms if t.weight.always_zero]
    if monitored:
        console.print("[bold]monitored only[/]  " + ", ".join(monitored), highlight=False)
    try:
        device = resolve_device(r.train.device)
        here = f"{resolve_precision(r.train.precision, device)} on this machine ({device})"
    except ImaeKitError as exc:
        here = f"cannot run on this machine: {exc}"
    console.print(f"[bold]precision[/]  {r.train.precision} -> {here}", highlight=False)


@cli.command()
@click.argument("items", nargs=-1, required=True)
@click.option("--set", "overrides", multiple=True, metavar="PATH=VALUE", help="Override applied to every recipe.")
def compare(items: Sequence[str], overrides: Sequence[str]) -> None:
    """Compare recipes or run directories side by side, term by term (weights, params, final values)."""
    from imae_kit.compare import comparison

    if len(items) < 2:
        raise click.UsageError("give at least two recipes or run directories")
    cmp = comparison(list(items), overrides=tuple(overrides))
    columns = [Column("term", "name"), *(Column(col) for col in cmp.columns)]
    print_table(console, columns, cmp.term_rows, sections=[cmp.eval_rows] if cmp.eval_rows else [],
                title="objectives term by term: weight [params] / final value (nats)", show_lines=True)


@cli.command()
@click.argument("recipe", type=click.Path(dir_okay=False))
@click.option("--grid", "grid", multiple=True, metavar="PATH=V1,V2,...",
              help="Sweep a recipe value over a list, e.g. --grid vars.beta=1,3,5 --grid train.seed=0,1,2 "
                   "(repeatable; every combination is run).")
@click.option("--set", "overrides", multiple=True, metavar="PATH=VALUE", help="Fixed override for every point.")
@click.option("--steps", type=click.IntRange(min=1), help="Train every point for N steps.")
@click.option("--out", type=click.Path(file_okay=False),
              help="Sweep directory (default runs/sweeps/NAME); the same command continues it.")
@click.option("--no-eval", is_flag=True, help="Skip each point's evaluation (the table then shows training terms).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
@click.option("--threads", type=click.IntRange(min=1), help=_THREADS_HELP + " With --jobs: threads per point "
              "(default: cores / jobs).")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=1, show_default=True,
              help="Points run at once on this machine, each in its own process.")
@click.option("--shard", metavar="I/N", help="Run only the points i (0-based, their NNN) with i % N == I-1, so N "
              "workers (a SLURM array, GNU parallel) share one sweep directory; a point another worker has "
              "taken is skipped.")
def sweep(recipe: str, grid: Sequence[str], overrides: Sequence[str], steps: int | None, out: str | None,
          no_eval: bool, quiet: bool, threads: int | None, jobs: int, shard: str | None) -> None:
    """Train RECIPE at every point of a grid, then tabulate and plot the results against the grid.

    Run the same command again to continue an interrupted sweep: finished points are kept."""
    from imae_kit.sweep import GridAxis, Sweep, SweepSpec, in_shard, parse_shard

    shard_range = parse_shard(shard) if shard is not None else None
    if jobs == 1:
        _set_threads(threads)
    spec = SweepSpec(recipe=recipe, fixed=tuple(overrides), grid=tuple(GridAxis.parse(g) for g in grid),
                     steps=steps, evaluate=not no_eval)
    sw = Sweep.prepare(spec, out=out)
    total = len(sw.points)
    mine = sum(in_shard(p, shard_range) for p in sw.points)
    where = f", shard {shard} ({mine} of them)" if shard_range else ""
    err_console.print(f"sweep {escape(str(sw.path))}: {total} points{where}"
                      + (f", {jobs} at once" if jobs > 1 else ""), highlight=False)

    def announce(point: Any, what: str) -> None:
        err_console.print(f"[bold]point {point.index + 1}/{total}[/] {escape(' '.join(point.overrides))}: "
                          f"{escape(what)}", highlight=False, soft_wrap=True)

    failures: list[str] = []
    if jobs > 1:
        status, failures = sw.run_parallel(jobs, threads=threads, quiet=quiet, announce=announce, shard=shard_range)
    else:
        status = sw.run(progress=not quiet, console=err_console, announce=announce, shard=shard_range)
    _report_sweeps([sw], x=None)
    if status == "interrupted":
        err_console.print("[yellow]sweep stopped; continue it with the same command[/] (it keeps finished points)")
        sys.exit(130)
    for failure in failures:
        err_console.print(f"[bold red]error:[/] {escape(failure)}", highlight=False, soft_wrap=True)
    if failures:
        sys.exit(2)


@cli.command()
@click.argument("sweep_dirs", nargs=-1, required=True, type=click.Path(file_okay=False))
@click.option("--x", "x", metavar="PATH", help="Horizontal axis: a grid path (default: the first numeric axis "
                                               "other than train.seed) or a number, e.g. --x NLL.")
@click.option("--out", type=click.Path(dir_okay=False), help="Figure file (default: SWEEP_DIR/figures/sweep.png "
                                                              "for one sweep; required for several).")
@click.option("--pool", is_flag=True, help="Sweeps of the same recipe, fixed overrides, budget and grid paths "
                                           "(one experiment run in several directories: a seed or a beta each) "
                                           "are one series.")
@click.option("--metric", "metrics", multiple=True, metavar="NAME",
              help="Only this number, by its full or short name, e.g. --metric 'acc(y)' --metric NLL "
                   "(repeatable; default: every number).")
@click.option("--table", type=click.Path(dir_okay=False), help="Also write a Markdown table of what the figure "
                                                                "draws: per series and x, the median (min-max).")
@click.option("--only", "only", multiple=True, metavar="PATH=V1,V2",
              help="Draw and tabulate only the points with these grid values, e.g. --only train.seed=0,1,2 "
                   "(repeatable, one per path).")
def collect(sweep_dirs: Sequence[str], x: str | None, out: str | None, pool: bool, metrics: Sequence[str],
            table: str | None, only: Sequence[str]) -> None:
    """Tabulate one or more sweep directories and plot them on shared axes (e.g. IMAE against beta-VAE)."""
    from imae_kit.sweep import Sweep, parse_only

    if len(sweep_dirs) > 1 and out is None:
        raise click.UsageError("several sweeps share one figure: name it with --out FILE.png")
    kept = parse_only(only)
    _report_sweeps([Sweep.open(d) for d in sweep_dirs], x=x, figure=out, pool=pool, metrics=list(metrics) or None,
                   table=table, only=kept)


def _report_sweeps(sweeps: list[Any], x: str | None, figure: str | None = None, pool: bool = False,
                   metrics: list[str] | None = None, table: str | None = None,
                   only: dict[str, tuple[Any, ...]] | None = None) -> None:
    from imae_kit.runs import atomic_write_text
    from imae_kit.sweep import SHORT_NAMES, format_cell, metric_columns, series, summary_table, sweep_figure, write_table

    for sw in sweeps:
        rows = sw.rows()
        csv_path, md_path = write_table(sw, rows)
        grid_paths = [a.path for a in sw.spec.grid]
        numbers = metric_columns(rows, skip=grid_paths)
        shown = [m for m in SHORT_NAMES if m in numbers] or numbers[:5]
        columns = [*(Column(col.split(".")[-1], "number") for col in grid_paths), Column("status", "name"),
                   *(Column(SHORT_NAMES.get(col, col), "number") for col in shown)]
        shown_rows = [dict(row, status="done" if row["status"] == "evaluated" else row["status"]) for row in rows]
        cells = [[format_cell(row.get(c), digits=3) for c in grid_paths + ["status"] + shown] for row in shown_rows]
        print_table(console, columns, cells, title=f"sweep {sw.path}")
        console.print(f"table: {csv_path} and {md_path}", highlight=False, soft_wrap=True)
    if pool or only:
        for line in series(sweeps, pool=pool, only=only):
            console.print(f"series {line.label}: {len(line.sweeps)} sweep(s), {len(line.rows)} points",
                          highlight=False, soft_wrap=True)
            if line.mixed_recipe_texts:
                err_console.print(f"[yellow]note:[/] the sweeps pooled as {escape(line.label)} began from different "
                                  f"texts of {escape(line.sweeps[0].spec.recipe)}", highlight=False, soft_wrap=True)
    path = Path(figure) if figure else sweeps[0].figure_path
    try:
        sweep_figure(sweeps, path, x=x, metrics=metrics, pool=pool, only=only)
    except ImaeKitError as exc:
        if metrics or pool or table or x or only:  # asked for by name: an error, not a note
            raise
        err_console.print(f"[yellow]no figure:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        return
    if table:
        atomic_write_text(Path(table), summary_table(sweeps, x=x, metrics=metrics, pool=pool, only=only))
    console.print(f"figure: {path}", highlight=False, soft_wrap=True)
    if table:
        console.print(f"summary: {table}", highlight=False, soft_wrap=True)


cli.add_command(data)


COMPUTING_COMMANDS = ("run", "eval", "sweep")  # the commands that train or evaluate in this process


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``imae-kit`` console script (and ``python -m imae_kit``, torchrun's processes)."""
    args = list(argv) if argv is not None else sys.argv[1:]
    if next((a for a in args if not a.startswith("-")), None) in COMPUTING_COMMANDS:
        from imae_kit.denormals import flush_denormals

        # this process is imae-kit's own: subnormal floats as zero in every torch thread, set before torch
        # creates them (they inherit it); see imae_kit.denormals. Not for --help, which does not load torch.
        flush_denormals()
    try:
        cli.main(args=args, prog_name="imae-kit", standalone_mode=True)
    except KeyboardInterrupt:  # pragma: no cover
        err_console.print("[yellow]interrupted[/]")
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()
