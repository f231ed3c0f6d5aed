"""`search` (optuna over CLI keys) and `repeat` (one fit per seed), driven as a user drives them."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import assert_one_clear_error, config, need_corpus, run_cli

# The makemore MLP at a few dozen steps: a trial takes about a second.
TINY_NAMES = [
    "--config",
    config("mlp_names.yaml"),
    "--trainer.max_steps=20",
    "--trainer.val_check_interval=10",
    "--trainer.limit_val_batches=2",
    "--trainer.limit_test_batches=2",
    "--trainer.enable_progress_bar=false",
    "--trainer.logger=CSVLogger",
    "--data.init_args.eval_batch_size=256",
]


@pytest.fixture(autouse=True)
def _names():
    need_corpus("names.txt")


def search_file(tmp_path: Path, **fields) -> Path:
    spec = {
        "metric": "val/loss",
        "sampler": "random",
        "pruner": "none",
        "seed": 0,
        "params": {
            "model.init_args.learning_rate": {"type": "log_uniform", "low": 0.01, "high": 0.5},
            "model.init_args.n_hidden": {"type": "choice", "values": [16, 32]},
        },
        **fields,
    }
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def trials(study: Path) -> list[dict]:
    with (study / "trials.csv").open() as f:
        return list(csv.DictReader(f))


def test_search_runs_trials_writes_best_config_that_fit_reproduces(tmp_path):
    space = search_file(tmp_path)
    run_cli("search", *TINY_NAMES, "--search", str(space), "--trials", "3")
    study = tmp_path / "search" / "space"
    rows = trials(study)
    assert [r["state"] for r in rows] == ["COMPLETE"] * 3
    # Each trial is a normal run: its own folder with its saved config and checkpoints.
    for row in rows:
        run = Path(row["run_dir"])
        assert (run / "config.yaml").is_file() and list((run / "checkpoints").glob("*.ckpt"))
        saved = yaml.safe_load((run / "config.yaml").read_text())
        assert saved["model"]["init_args"]["n_hidden"] == int(row["model.init_args.n_hidden"])
    best = min(rows, key=lambda r: float(r["value"]))
    assert (study / "history.png").stat().st_size > 0
    # best.yaml is the best trial's whole config: fit --config best.yaml parses to its values.
    printed = run_cli("fit", "--config", str(study / "best.yaml"), "--print_config").stdout
    model = yaml.safe_load(printed)["model"]["init_args"]
    assert model["n_hidden"] == int(best["model.init_args.n_hidden"])
    assert model["learning_rate"] == pytest.approx(float(best["model.init_args.learning_rate"]))
    assert yaml.safe_load(printed)["trainer"]["max_steps"] == 20


def test_resume_continues_the_study_and_reruns_a_killed_trial(tmp_path):
    import optuna

    space = search_file(tmp_path)
    run_cli("search", *TINY_NAMES, "--search", str(space), "--trials", "1")
    study_dir = tmp_path / "search" / "space"
    # A search killed mid-trial (kill -9) leaves the trial marked running by a dead process.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(study_dir / "study.journal"))
    )
    study = optuna.load_study(study_name="space", storage=storage)
    killed = study.ask(
        {
            "model.init_args.learning_rate": optuna.distributions.FloatDistribution(
                0.01, 0.5, log=True
            ),
            "model.init_args.n_hidden": optuna.distributions.CategoricalDistribution([16, 32]),
        }
    )
    killed.set_user_attr("worker", f"{__import__('socket').gethostname()}:{dead.pid}")

    again = run_cli("search", *TINY_NAMES, "--search", str(space), "--trials", "2", check=False)
    assert_one_clear_error(again, "already exists", "--resume")
    run_cli("search", *TINY_NAMES, "--search", str(space), "--trials", "3", "--resume")
    rows = trials(study_dir)
    states = [r["state"] for r in rows]
    assert states.count("COMPLETE") == 3 and states[killed.number] == "FAIL"
    rerun = rows[killed.number + 1]  # the killed trial's values run first on --resume
    assert (
        rerun["model.init_args.learning_rate"]
        == rows[killed.number]["model.init_args.learning_rate"]
    )


def test_pruning_stops_a_trial_worse_than_the_median(tmp_path):
    # Grid seed 1 runs lr 0.3 first (whole: the one startup trial), then lr 1e-6, whose loss
    # at the first validation is above the first trial's: pruned there.
    params = {"model.init_args.learning_rate": {"type": "choice", "values": [0.3, 1e-6]}}
    space = search_file(
        tmp_path, pruner="median", startup_trials=1, sampler="grid", seed=1, params=params
    )
    run_cli("search", *TINY_NAMES, "--search", str(space), "--trials", "2")
    rows = trials(tmp_path / "search" / "space")
    assert [(r["model.init_args.learning_rate"], r["state"]) for r in rows] == [
        ("0.3", "COMPLETE"),
        ("1e-06", "PRUNED"),
    ]
    assert [int(r["steps"]) for r in rows] == [20, 10]


@pytest.mark.parametrize(
    ("fields", "fragments"),
    [
        (
            {"params": {"model.init_args.learnin_rate": {"type": "uniform", "low": 0, "high": 1}}},
            ["params.model.init_args.learnin_rate", "not a setting"],
        ),
        (
            {"params": {"model.init_args.dropout": {"type": "uniform", "low": 0.5, "high": 0.5}}},
            ["params.model.init_args.dropout", "empty"],
        ),
        ({"params": {"model.init_args.n_hidden": {"type": "choice", "values": []}}}, ["empty"]),
        ({"metric": "val/acc"}, ["val/acc", "not logged", "val/loss"]),
        ({"samplr": "tpe"}, ["unknown key 'samplr'"]),
        ({"sampler": "grid"}, ["grid", "model.init_args.learning_rate"]),
    ],
)
def test_bad_search_file_is_one_clear_error_before_any_trial(tmp_path, fields, fragments):
    space = search_file(tmp_path, **fields)
    proc = run_cli("search", *TINY_NAMES, "--search", str(space), "--trials", "2", check=False)
    assert proc.returncode == 2
    assert_one_clear_error(proc, str(space), *fragments)
    assert not (tmp_path / "search").exists()  # no study, no trial


def test_repeat_reports_mean_and_std_of_the_test_metrics_over_seeds(tmp_path):
    import json

    proc = run_cli("repeat", *TINY_NAMES, "--seeds", "1,2")
    summary = json.loads((tmp_path / "repeat" / "mlp_names" / "summary.json").read_text())
    assert [run["seed"] for run in summary["runs"]] == [1, 2]
    losses = summary["metrics"]["test/loss"]["values"]
    assert len(losses) == 2 and losses[0] != losses[1]  # other seeds, other runs
    assert summary["metrics"]["test/loss"]["std"] > 0
    assert "| test/loss |" in proc.stdout
    bad = run_cli("repeat", *TINY_NAMES, "--seeds", "1", check=False)
    assert_one_clear_error(bad, "--seeds", "two or more")


def test_trials_logged_to_wandb_are_grouped_under_the_study(tmp_path):
    from cli.in_process import parse_only, run_placement

    args = [a for a in TINY_NAMES if a != "--trainer.logger=CSVLogger"]
    base = parse_only(args).config
    placed = parse_only(args + run_placement(base, tmp_path / "study", "study", "study-trial001"))
    logger = placed.config.trainer.logger
    assert logger.class_path.endswith("WandbLogger")
    settings = {**vars(logger.init_args), **(logger.get("dict_kwargs") or {})}
    assert settings["group"] == "study" and settings["name"] == "study-trial001"
    assert str(settings["save_dir"]) == str(tmp_path / "study")
