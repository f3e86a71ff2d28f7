"""The `descentkit` command line.

Only click, pydantic and PyYAML are imported at start-up: `--help` and study-file
errors answer in well under a second; TensorFlow is imported when training starts.
A user mistake exits 2 with one line naming the problem and the fix.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from descentkit.tuner import ConfigError, load_study

EXIT_USAGE = 2


def _fail(message: str) -> None:
    click.echo(f"descentkit: error: {message}", err=True)
    sys.exit(EXIT_USAGE)


def _quiet_tensorflow() -> None:
    """TensorFlow's C++ start-up chatter (CUDA probing, CPU features) is noise on a CLI.

    Some of it is written before TF_CPP_MIN_LOG_LEVEL is read, so the import runs
    with the stderr file descriptor pointed at /dev/null; a Python exception from
    the import is still raised (and shown) after stderr is restored.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="descentkit")
def main() -> None:
    """Tune and diagnose Keras models trained with SGD."""


@main.command()
@click.argument("study")
@click.option("--trials", "-n", type=click.IntRange(min=1), help="Trials to add (default: the study's `trials`).")
@click.option("--total-trials", type=click.IntRange(min=1), help="Instead of --trials: stop once the study holds this many trials (for workers on many machines).")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), help="Stop starting trials after this many seconds.")
@click.option("--workers", "-j", type=click.IntRange(min=1), default=1, show_default=True, help="Worker processes on this machine, sharing the trials and the cores.")
@click.option("--storage", envvar="DESCENTKIT_STORAGE", help="[env DESCENTKIT_STORAGE] Optuna storage URL (sqlite:///..., postgresql+psycopg2://...) or a journal file path. Default: ./descentkit_studies/STUDY.journal.")
@click.option("--study-name", help="Name of the stored study (default: the study's `name`).")
@click.option("--seed", type=int, help="Override the study's seed.")
@click.option("--tracking-uri", envvar="MLFLOW_TRACKING_URI", help="[env MLFLOW_TRACKING_URI] MLflow tracking URI. Default: sqlite:///mlflow.db in the working directory.")
@click.option("--experiment", help="MLflow experiment (default: the study name).")
@click.option("--tracking/--no-tracking", envvar="DESCENTKIT_TRACKING", default=True, show_default=True, help="[env DESCENTKIT_TRACKING] Log the sweep to MLflow.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.option("--json", "as_json", is_flag=True, help="Print the final summary as JSON.")
def sweep(study: str, trials: int | None, total_trials: int | None, timeout: float | None, workers: int,
          storage: str | None, study_name: str | None, seed: int | None, tracking_uri: str | None,
          experiment: str | None, tracking: bool, quiet: bool, as_json: bool) -> None:
    """Run (or resume) a sweep of STUDY: a built-in study name or a YAML file.

    Running the same command again resumes the stored study and adds trials.
    Workers started at once on one study (--workers, or the same command on
    several machines with a shared --storage) share the --trials budget.
    """
    if trials is not None and total_trials is not None:
        _fail("give --trials (trials to add) or --total-trials (trials the study should hold), not both")
    from descentkit.tuner import check_storage

    try:
        config = load_study(study)
        check_storage(storage)
    except ConfigError as exc:
        _fail(str(exc))
    _quiet_tensorflow()
    # MLflow sets its own logger to INFO when imported: "Updating database tables" is
    # not news to a user who asked for a sweep. Their own MLFLOW_LOGGING_LEVEL wins.
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    from descentkit.tuner import interrupts, run_sweep

    with interrupts():  # a second Ctrl-C while the first is handled exits at once
        try:
            result = run_sweep(config, trials=trials, total_trials=total_trials, timeout=timeout, storage=storage,
                               study_name=study_name, seed=seed, workers=workers, progress=not quiet,
                               tracking=tracking, tracking_uri=tracking_uri, experiment_name=experiment)
        except ConfigError as exc:
            _fail(str(exc))
        except KeyboardInterrupt:
            click.echo("\nInterrupted: finished trials are stored, interrupted ones re-queued; "
                       "run the same command to resume.", err=True)
            sys.exit(130)
    from descentkit.tuner import pathology_map

    view = pathology_map(result.study)
    if as_json:
        click.echo(json.dumps({**result.summary.to_dict(), "pathology": view, "mlflow": result.tracking}, indent=2))
    else:
        click.echo(result.summary.to_text())
        click.echo(_pathology_lines(view))
        again = f"descentkit results {study}" + (f" --storage {result.summary.storage}" if storage else "")
        click.echo(f"Show again: {again}")
        if result.tracking_text:
            click.echo(result.tracking_text)


def _pathology_lines(view: dict) -> str:
    """Where in the search space the pathologies were (the pathology map without its title)."""
    from descentkit.tuner import pathology_text

    return "Pathologies:\n" + "\n".join("  " + line for line in pathology_text(view, title=False).splitlines())


def _stored_study(study: str, storage: str | None, study_name: str | None):
    """(name, Optuna study, printable location) of a stored sweep; exits 2 with one line if there is none."""
    name = study_name
    if name is None:
        try:
            name = load_study(study).name
        except ConfigError:
            name = Path(study).stem  # a study stored under a name with no file here
    from descentkit.tuner import StorageSpec

    spec = StorageSpec(storage, name)
    try:
        spec.check()
    except ConfigError as exc:
        _fail(str(exc))
    if storage is None and not Path(spec.resolved).is_file():
        _fail(f"no stored study {name!r} under ./descentkit_studies/; run `descentkit sweep {study}` first or pass --storage")
    try:
        return name, spec.load_study(), spec.shown
    except KeyError:
        _fail(f"no study named {name!r} in {spec.shown}; pass --study-name")


_storage_option = click.option("--storage", envvar="DESCENTKIT_STORAGE", help="[env DESCENTKIT_STORAGE] Storage URL or journal path (default: the embedded file of STUDY).")
_study_name_option = click.option("--study-name", help="Name of the stored study (default: the study's `name`).")


@main.command()
@click.argument("study")
@_storage_option
@_study_name_option
@click.option("--json", "as_json", is_flag=True, help="Print every trial as JSON.")
@click.option("--top", type=click.IntRange(min=1), default=5, show_default=True, help="Best trials to show.")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), help="Also write the pathology map (learning rate against batch size, coloured by outcome) to this PNG.")
def results(study: str, storage: str | None, study_name: str | None, as_json: bool, top: int, plot: Path | None) -> None:
    """Print the results of a stored sweep of STUDY again, with where its pathologies were."""
    _, stored, location = _stored_study(study, storage, study_name)
    from descentkit.tuner import pathology_map, summarize_study, trial_rows

    summary = summarize_study(stored, location, top=top)
    view = pathology_map(stored)
    if as_json:
        payload = summary.to_dict()
        payload["pathology"] = view
        payload["trials"] = [row.__dict__ for row in trial_rows(stored)]
        click.echo(json.dumps(payload, indent=2))
    else:
        click.echo(summary.to_text(top=top))
        click.echo(_pathology_lines(view))
    if plot is not None:
        from descentkit.tuner import plot_pathology_map

        plot_pathology_map(stored).savefig(plot, dpi=100)
        if not as_json:
            click.echo(f"Plot: {plot}")


@main.command("mlflow-relog")
@click.argument("study")
@_storage_option
@_study_name_option
@click.option("--tracking-uri", envvar="MLFLOW_TRACKING_URI", help="[env MLFLOW_TRACKING_URI] MLflow tracking URI.")
@click.option("--experiment", help="MLflow experiment (default: the study name).")
def mlflow_relog(study: str, storage: str | None, study_name: str | None, tracking_uri: str | None, experiment: str | None) -> None:
    """Log the trials of STUDY that MLflow missed (e.g. while the server was down). Safe to repeat."""
    name, stored, location = _stored_study(study, storage, study_name)
    _quiet_tensorflow()
    from descentkit.tuner import relog_study

    try:
        logged = relog_study(stored, tracking_uri, experiment_name=experiment, storage=storage and location)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        click.echo(f"descentkit: error: MLflow is still unreachable ({type(exc).__name__}: {first}); nothing lost, try again later", err=True)
        sys.exit(1)
    done = f": trial(s) {', '.join(map(str, logged))}" if logged else " (every trial was already there)"
    click.echo(f"Logged {len(logged)} trial(s) of {name!r} to MLflow{done}")


@main.command()
@click.argument("study")
@_storage_option
@_study_name_option
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), help="HTML file (default: ./STUDY-report.html).")
def report(study: str, storage: str | None, study_name: str | None, output: Path | None) -> None:
    """Write a self-contained HTML report of STUDY: best trials, pathology map, plots, advice."""
    name, stored, _ = _stored_study(study, storage, study_name)
    _quiet_tensorflow()
    from descentkit.tuner import write_report

    click.echo(f"Report: {write_report(stored, output or Path(f'{name}-report.html'))}")


@main.command("lr-find")
@click.argument("study")
@click.option("--min-lr", type=click.FloatRange(min=0, min_open=True), default=1e-6, show_default=True, help="First learning rate of the test.")
@click.option("--max-lr", type=click.FloatRange(min=0, min_open=True), default=10.0, show_default=True, help="Last learning rate of the test.")
@click.option("--batch-size", type=click.IntRange(min=1), help="Batch size (default: the study's first choice).")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), help="PNG of loss against learning rate (default: ./STUDY-lr-find.png).")
@click.option("--json", "as_json", is_flag=True, help="Print the result, curve included, as JSON.")
def lr_find(study: str, min_lr: float, max_lr: float, batch_size: int | None, plot: Path | None, as_json: bool) -> None:
    """Learning-rate range test of STUDY's model: where the loss falls fastest, where it diverges.

    About one epoch of training with the learning rate growing exponentially from
    --min-lr to --max-lr (Smith 2017). `learning_rate: auto` in a study file runs
    the same test before a sweep and searches the range it prints.
    """
    try:
        config = load_study(study)
    except ConfigError as exc:
        _fail(str(exc))
    if min_lr >= max_lr:
        _fail(f"--min-lr ({min_lr:g}) must be below --max-lr ({max_lr:g})")
    _quiet_tensorflow()
    from descentkit.diagnostics import plot_lr_range
    from descentkit.tuner import lr_range_test

    try:
        result = lr_range_test(config, min_lr=min_lr, max_lr=max_lr, batch_size=batch_size)
    except ConfigError as exc:
        _fail(str(exc))
    except ValueError as exc:  # the loss was non-finite from the start: the message says what to change
        _fail(str(exc))
    path = plot or Path(f"{config.name}-lr-find.png")
    plot_lr_range(result, title=f"{config.name}: learning-rate range test").savefig(path, dpi=100)
    if as_json:
        click.echo(json.dumps({**result.to_dict(), "plot": str(path)}, indent=2))
    else:
        click.echo(result.to_text())
        click.echo(f"Plot: {path}")


@main.command()
def studies() -> None:
    """List the built-in studies."""
    import yaml

    from descentkit.studies import builtin_study_names, builtin_study_path

    for name in builtin_study_names():
        data = yaml.safe_load(builtin_study_path(name).read_text()) or {}
        click.echo(f"{name:<16} {data.get('description', '')}")


@main.command()
@click.argument("name")
def show(name: str) -> None:
    """Print a built-in study's file, to copy as a template."""
    from descentkit.studies import builtin_study_names, builtin_study_path

    try:
        click.echo(builtin_study_path(name).read_text(), nl=False)
    except KeyError:
        _fail(f"no built-in study {name!r}; choose from {', '.join(builtin_study_names())}")


if __name__ == "__main__":
    main()
