"""The W&B sweep files in configs/sweeps/: each command line the agent would run parses, so a
renamed key breaks here rather than in every run of a hosted sweep. Offline: the arguments
are built by wandb's own agent code, not by a server."""

from __future__ import annotations

import pytest
import yaml

from cli.list_configs import config_rows
from cli.shipped_configs import shipped_names
from tests.conftest import ROOT, run_cli

SWEEPS = sorted((ROOT / "configs" / "sweeps").glob("*.yaml"))


def first_value(spec: dict):
    """One value a sweep may give a parameter: its fixed `value`, its first of `values`, or
    the lower end of a distribution."""
    if "value" in spec:
        return spec["value"]
    if "values" in spec:
        return spec["values"][0]
    return spec["min"]


def agent_command(sweep: dict) -> list[str]:
    """The command line `wandb agent` runs for a trial with these values (wandb_agent.py:
    each ${macro} of `command` replaced; ${args} is `--name=value` for every parameter)."""
    from wandb.sdk.launch.sweeps.utils import create_sweep_command, create_sweep_command_args

    trial = {
        "args": {name: {"value": first_value(spec)} for name, spec in sweep["parameters"].items()}
    }
    macros = {
        **create_sweep_command_args(trial),
        "env": ["/usr/bin/env"],
        "interpreter": ["python"],
        "program": [sweep["program"]],
    }
    command = []
    for part in create_sweep_command(sweep["command"]):
        part = str(part)
        is_macro = part.startswith("${") and part.endswith("}")
        command += macros[part[2:-1]] if is_macro else [part]
    return command


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.stem)
def test_a_sweep_trial_parses_with_its_values(path):
    sweep = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert sweep["metric"]["name"] == "val/loss" and sweep["program"] == "main.py"
    command = agent_command(sweep)
    assert command[:4] == ["/usr/bin/env", "python", "main.py", "fit"]
    assert (ROOT / command[2]).is_file()
    assert (ROOT / command[command.index("--config") + 1]).is_file()
    args = [f"--{name}={first_value(spec)}" for name, spec in sweep["parameters"].items()]
    assert command[-len(args) :] == args  # the agent's own ${args}

    merged = yaml.safe_load(run_cli(*command[3:], "--print_config").stdout)
    for name, spec in sweep["parameters"].items():
        value = merged
        for key in name.split("."):
            value = value[key]
        assert value == first_value(spec), name


def test_the_sweeps_folder_holds_no_config_of_its_own():
    """configs/sweeps/ sits beside the configs: neither listed nor addressable as one."""
    assert SWEEPS
    rows = config_rows()
    assert len(rows) == len(shipped_names())  # the top-level configs only
    assert ("gpt_shakespeare_char_cpu.yaml", "GPT", "TinyShakespeareDataModule") in rows
