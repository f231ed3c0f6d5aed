"""The W&B run of a SLURM job goes on after a requeue instead of starting a second one.

With `#SBATCH --signal=SIGUSR1@90` and `--requeue` (launch/slurm_gpt.sbatch), SLURM warns a
job 90 s before its time limit or preemption; Lightning's SLURMEnvironment (auto-requeue on
by default) then saves `hpc_ckpt_N.ckpt` in the trainer's `default_root_dir`, finishes the
loggers and requeues the job, which starts again under the same job id and resumes from that
checkpoint. A WandbLogger without an `id` would open a new W&B run at each start; here its id
comes from the job (`<run name>-slurm-<job id>`), the same at every start, and W&B resumes
the run (Lightning's WandbLogger asks for `resume="allow"`). The run's folder (its
checkpoints, named after the id) is the same too. Outside a SLURM batch job, or with an id
given, nothing changes.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

from jsonargparse import Namespace


def slurm_job_id(env: Mapping[str, str] = os.environ) -> str | None:
    """The id a requeued job keeps (an array's task: `<array job>_<task>`); None outside a
    SLURM batch job (an interactive `srun --pty bash` or `salloc` session is not one)."""
    # Lightning's SLURMEnvironment.detect(), on `env`: tasks started by srun, not interactive.
    batch = "SLURM_NTASKS" in env and env.get("SLURM_JOB_NAME") not in ("bash", "interactive")
    if "SLURM_JOB_ID" not in env or not batch:
        return None
    if env.get("SLURM_ARRAY_JOB_ID") and env.get("SLURM_ARRAY_TASK_ID"):
        return f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    return env["SLURM_JOB_ID"]


def keep_wandb_run_across_requeues(config: Namespace, env: Mapping[str, str] = os.environ) -> None:
    """Give a WandbLogger without an id the job's stable one (see above)."""
    logger = config.get("trainer", Namespace()).get("logger")
    init_args = logger.get("init_args") if isinstance(logger, Namespace) else None
    if not isinstance(init_args, Namespace) or init_args.get("id"):
        return
    if not str(logger.get("class_path")).endswith("WandbLogger"):
        return
    job = slurm_job_id(env)
    if job is not None:
        # W&B ids are letters, digits, - and _; series runs (repeat, search) differ by name.
        name = re.sub(r"[^\w-]", "-", str(init_args.get("name") or "run"))
        init_args.id = f"{name}-slurm-{job}"
