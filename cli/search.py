"""`search`: hyperparameter search with optuna over any config's CLI keys, offline, resumable.

    python main.py search --config configs/mlp_names.yaml --search configs/search/mlp_names.yaml --trials 20
    python main.py search ... --resume          # a killed search goes on; or a second worker

Each trial is a normal `fit` (its own run folder and saved config; a W&B run grouped under the
study). The study lives in a journal file in its folder (`search/<study>/study.journal`), so
a killed search continues where it stopped and several processes can share one study. At the
end: `best.yaml` (the best trial's full config: `fit --config best.yaml` trains it again),
`trials.csv`, and the optimisation history and parameter importances as PNGs.
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
import socket
import time
import warnings
from pathlib import Path

import yaml

from cli.in_process import (
    OptionParser,
    build_fit,
    finish,
    overrides,
    parse_only,
    prepared,
    run_placement,
)
from cli.search_space import SearchSpec, read_search_file
from core.errors import UserError
from core.files import atomic_path, atomic_write_text
from core.runs import run_dir

JOURNAL = "study.journal"


def parse_options(argv: list[str]):
    """The search's own options; every other argument (`--config`, `--trainer.max_steps=...`)
    goes to each trial's `fit` as typed."""
    parser = OptionParser(
        prog="main.py search",
        description="Hyperparameter search (optuna) over a config's CLI keys; other arguments "
        "(--config FILE, --trainer.max_steps=N, ...) go to every trial's fit.",
    )
    parser.add_argument("--search", required=True, help="the search file (YAML): see README")
    parser.add_argument("--trials", type=int, required=True, help="finished trials wanted")
    parser.add_argument("--study_name", help="default: the search file's name")
    parser.add_argument("--study_dir", help="default: search/<study_name> in this folder")
    parser.add_argument("--resume", action="store_true", help="continue (or join) the study")
    options, rest = parser.parse_known_args(argv)
    if options.trials < 1:
        raise UserError(f"search: --trials must be at least 1, got {options.trials}.")
    if not any(a == "--config" or a.startswith("--config=") for a in rest):
        raise UserError("search: give the config to tune, `--config configs/X.yaml`.")
    return options, rest


def search(argv: list[str]) -> None:
    import optuna

    options, fit_args = parse_options(argv)
    spec = read_search_file(options.search)
    fit_args = prepared(fit_args)
    base = parse_only(fit_args, "the config").config
    check_keys(spec, fit_args)
    name = options.study_name or spec.path.stem
    folder = Path(options.study_dir or Path("search") / name)
    journal = folder / JOURNAL
    if journal.exists() and not options.resume:
        raise UserError(
            f"search: the study {name!r} already exists in {folder}: `--resume` continues it "
            "(or joins it from a second process); `--study_name` starts another."
        )
    if options.resume and not journal.exists():
        raise UserError(f"search --resume: no study in {folder} (no {JOURNAL}); drop --resume.")
    check_metric_logged(spec, fit_args)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    folder.mkdir(parents=True, exist_ok=True)
    study = open_study(spec, name, journal)
    check_same_search(study, spec, fit_args)
    if options.resume:
        retry_interrupted(study)

    def objective(trial) -> float:
        return run_trial(trial, spec, fit_args, base, folder, name)

    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    done = len(study.get_trials(deepcopy=False, states=finished))
    print(f"search: study {name!r} in {folder}, {done} of {options.trials} trials finished")
    if done < options.trials:
        stop_at = optuna.study.MaxTrialsCallback(options.trials, states=finished)
        study.optimize(objective, callbacks=[stop_at], catch=())
    write_outputs(study, spec, fit_args, base, folder, name)


# --- before any trial ------------------------------------------------------------------------


def check_keys(spec: SearchSpec, fit_args: list[str]) -> None:
    """Every key of the search file is a setting of this config, and every space's values are
    accepted for it: parsed by the CLI with a value of each space (nothing is built)."""
    for space in spec.params:
        where = f"search file {spec.path}: params.{space.key}"
        try:
            parse_only(fit_args + overrides({space.key: space.example()}), where)
        except UserError as err:
            unknown = re.search(r"(?:Option|Key) '([^']+)' is not accepted", str(err))
            if unknown is None:
                raise
            raise UserError(
                f"{where}: {unknown.group(1)!r} is not a setting of this config (`python "
                "main.py fit --config ... --print_config` shows every key)."
            ) from None


def check_metric_logged(spec: SearchSpec, fit_args: list[str]) -> None:
    """The metric is one validation logs: the model validates one batch before any trial."""
    import lightning as L

    example = {space.key: space.example() for space in spec.params}
    cli = build_fit(fit_args + overrides(example) + ["--trainer.logger=false"])
    trainer = L.Trainer(
        accelerator=cli.trainer.accelerator,
        devices=1,
        logger=False,
        limit_val_batches=1,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.validate(cli.model, datamodule=cli.datamodule, verbose=False)
    logged = sorted(trainer.callback_metrics)
    finish()
    if spec.metric not in logged:
        raise UserError(
            f"search file {spec.path}: metric {spec.metric!r} is not logged in validation by "
            f"{type(cli.model).__name__}; it logs: {', '.join(logged) or 'nothing'}."
        )


# --- the study -------------------------------------------------------------------------------


def open_study(spec: SearchSpec, name: str, journal: Path):
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    storage = JournalStorage(JournalFileBackend(str(journal)))
    return optuna.create_study(
        study_name=name,
        storage=storage,
        direction=spec.direction,
        sampler=make_sampler(spec),
        pruner=make_pruner(spec),
        load_if_exists=True,
    )


def make_sampler(spec: SearchSpec):
    import optuna

    if spec.sampler == "grid":
        grid = {space.key: space.grid() for space in spec.params}
        return optuna.samplers.GridSampler(grid, seed=spec.seed)
    if spec.sampler == "random":
        return optuna.samplers.RandomSampler(seed=spec.seed)
    return optuna.samplers.TPESampler(seed=spec.seed)


def make_pruner(spec: SearchSpec):
    import optuna

    if spec.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=spec.startup_trials)
    if spec.pruner == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner()
    return optuna.pruners.NopPruner()


def check_same_search(study, spec: SearchSpec, fit_args: list[str]) -> None:
    """A study continues the search it started: the same search file and arguments."""
    fingerprint = hashlib.sha256(spec.path.read_bytes() + "\0".join(fit_args).encode()).hexdigest()[
        :16
    ]
    stored = study.user_attrs.get("fingerprint")
    if stored is None:
        study.set_user_attr("fingerprint", fingerprint)
        study.set_user_attr("fit_args", fit_args)
        study.set_user_attr("search_file", str(spec.path))
    elif stored != fingerprint:
        raise UserError(
            f"search: the study {study.study_name!r} was started with another search file or "
            f"other arguments ({' '.join(study.user_attrs.get('fit_args', []))}); resume it "
            "with those, or give a new --study_name."
        )


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def retry_interrupted(study) -> None:
    """Trials that a killed search left unfinished run again first: those interrupted (Ctrl+C,
    SIGTERM) and those still marked running by a process of this machine that is gone."""
    from optuna.trial import TrialState

    host = socket.gethostname()
    retried = set(study.user_attrs.get("retried", []))  # finished trials take no new attrs
    for trial in study.get_trials(deepcopy=False):
        if trial.number in retried:
            continue
        worker_host, _, pid = str(trial.user_attrs.get("worker", "")).rpartition(":")
        stale = (
            trial.state == TrialState.RUNNING
            and worker_host == host
            and pid.isdigit()
            and not process_alive(int(pid))
        )
        if stale:
            study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        if stale or (trial.state == TrialState.FAIL and trial.user_attrs.get("interrupted")):
            retried.add(trial.number)
            study.enqueue_trial(trial.params, skip_if_exists=False)
            print(f"search: trial {trial.number} was interrupted; its parameters run again")
    study.set_user_attr("retried", sorted(retried))


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --- one trial -------------------------------------------------------------------------------


def run_trial(trial, spec: SearchSpec, fit_args, base, folder: Path, name: str) -> float:
    """One `fit` with the trial's values; its best value of the metric. A trial whose loss
    turns NaN or inf counts as pruned (the sampler learns to avoid the region)."""
    import optuna

    from callbacks.non_finite import NonFiniteError
    from callbacks.trial_pruning import TrialPruning

    values = {space.key: space.suggest(trial) for space in spec.params}
    trial.set_user_attr("worker", worker_id())
    run_name = f"{name}-trial{trial.number:03d}"
    args = fit_args + overrides(values) + run_placement(base, folder, name, run_name)
    print(f"\nsearch: trial {trial.number}: {', '.join(f'{k}={v}' for k, v in values.items())}")
    cli, started = None, time.perf_counter()
    try:
        cli = build_fit(args)
        pruning = TrialPruning(trial, spec.metric, spec.direction, prune=spec.pruner != "none")
        cli.trainer.callbacks.append(pruning)
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    except NonFiniteError as err:
        trial.set_user_attr("diverged", str(err))
        raise optuna.TrialPruned(f"diverged: {err}") from None
    except (KeyboardInterrupt, SystemExit) as err:  # Ctrl+C, SIGTERM: run it again on --resume
        trial.set_user_attr("interrupted", type(err).__name__)
        raise
    finally:
        trial.set_user_attr("seconds", round(time.perf_counter() - started, 1))
        if cli is not None:
            trial.set_user_attr("steps", cli.trainer.global_step)
            trial.set_user_attr("run_dir", str(run_dir(cli.trainer)))
        finish()
    if pruning.best is None:
        raise UserError(f"trial {trial.number}: validation never logged {spec.metric}.")
    return pruning.best


# --- at the end ------------------------------------------------------------------------------


def write_outputs(study, spec: SearchSpec, fit_args, base, folder: Path, name: str) -> None:
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    write_trials_csv(trials, folder / "trials.csv")
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if not complete:
        print(f"search: no trial completed; see {folder / 'trials.csv'}")
        return
    best = study.best_trial
    best_yaml = folder / "best.yaml"
    write_best_config(best, spec, fit_args, best_yaml, name)
    plots = write_plots(study, folder)
    pruned = sum(t.state == TrialState.PRUNED for t in trials)
    steps = sum(t.user_attrs.get("steps", 0) for t in trials)
    print(
        f"\nsearch: {len(complete)} trials completed, {pruned} pruned, {steps} training steps "
        f"in all.\nbest: trial {best.number}, {spec.metric} = {best.value:.4g} with "
        + ", ".join(f"{k}={v}" for k, v in best.params.items())
    )
    print(f"best config: {best_yaml} (train it: python main.py fit --config {best_yaml})")
    log_to_wandb(base, study, folder, name, plots)


def write_trials_csv(trials, path: Path) -> None:
    keys = sorted({k for t in trials for k in t.params})
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["trial", "state", "value", *keys, "steps", "seconds", "run_dir"])
        for t in trials:
            attrs = t.user_attrs
            writer.writerow(
                [t.number, t.state.name, t.value, *(t.params.get(k) for k in keys)]
                + [attrs.get("steps"), attrs.get("seconds"), attrs.get("run_dir")]
            )


def write_best_config(best, spec: SearchSpec, fit_args, path: Path, name: str) -> None:
    """The best trial's whole config, as the CLI resolves it (the shared defaults, the config
    files, the arguments, the trial's values): `fit --config best.yaml` trains it again."""
    cli = parse_only(fit_args + overrides(best.params))
    text = cli.parser.dump(cli.config, skip_none=False)
    header = (
        f"# Best trial of the search {name!r} ({spec.path}): trial {best.number}, "
        f"{spec.metric} = {best.value:.6g}.\n# "
        + ", ".join(f"{k}: {v}" for k, v in best.params.items())
        + f"\n# Train it again: python main.py fit --config {path}\n"
    )
    atomic_write_text(path, header + text)
    yaml.safe_load(text)  # a dump that does not read back is a bug here, not a user's error


def write_plots(study, folder: Path) -> dict[str, Path]:
    """The optimisation history and (with two or more completed trials) the parameter
    importances, as PNGs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.exceptions import ExperimentalWarning
    from optuna.visualization import matplotlib as optuna_plots

    warnings.filterwarnings("ignore", category=ExperimentalWarning)  # stable since optuna 2.2

    plots = {}
    makers = {
        "history": optuna_plots.plot_optimization_history,
        "importance": optuna_plots.plot_param_importances,
    }
    for title, make in makers.items():
        try:
            axes = make(study)
        except (ValueError, RuntimeError) as err:  # importances need >= 2 distinct trials
            print(f"search: no {title} plot ({err})")
            continue
        path = folder / f"{title}.png"
        with atomic_path(path) as tmp:
            axes.figure.savefig(tmp, dpi=120, bbox_inches="tight", format="png")
        plt.close(axes.figure)
        plots[title] = path
    return plots


def log_to_wandb(base, study, folder: Path, name: str, plots: dict[str, Path]) -> None:
    """With W&B as the logger: a summary run in the study's group, with the plots and the
    table of trials."""
    from cli.in_process import logger_kind

    if logger_kind(base) != "WandbLogger":
        return
    import wandb

    project = base.trainer.logger.init_args.get("project") or "seqmodels"
    run = wandb.init(
        project=project,
        group=name,
        name=f"{name}-summary",
        job_type="search",
        dir=str(folder),
    )
    rows = [[t.number, t.state.name, t.value, str(t.params)] for t in study.get_trials()]
    run.log(
        {
            "search/trials": wandb.Table(columns=["trial", "state", "value", "params"], data=rows),
            **{f"search/{title}": wandb.Image(str(path)) for title, path in plots.items()},
        }
    )
    run.summary["search/best_value"] = study.best_value
    run.finish()
