"""A requeued SLURM job resumes its W&B run: the WandbLogger's id comes from the job, the same
at every start (cli/requeue.py). SLURM is faked by its environment variables."""

from __future__ import annotations

import pytest
from jsonargparse import Namespace
from lightning.pytorch.loggers import WandbLogger

from cli.requeue import keep_wandb_run_across_requeues, slurm_job_id

BATCH_JOB = {"SLURM_JOB_ID": "4242", "SLURM_NTASKS": "8", "SLURM_JOB_NAME": "gpt"}


def wandb_config(**init_args) -> Namespace:
    logger = Namespace(
        class_path="lightning.pytorch.loggers.WandbLogger",
        init_args=Namespace(project="seqmodels", name="gpt_wikitext2_fsdp", id=None, **init_args),
    )
    return Namespace(trainer=Namespace(logger=logger))


def test_every_start_of_a_job_gets_the_same_wandb_run_id():
    first, after_requeue = wandb_config(), wandb_config()
    keep_wandb_run_across_requeues(first, BATCH_JOB)
    keep_wandb_run_across_requeues(after_requeue, dict(BATCH_JOB))
    assert first.trainer.logger.init_args.id == "gpt_wikitext2_fsdp-slurm-4242"
    assert after_requeue.trainer.logger.init_args.id == first.trainer.logger.init_args.id


def test_lightnings_wandb_logger_resumes_a_run_with_that_id(tmp_path):
    # What makes the second start continue the run rather than fail or fork it.
    logger = WandbLogger(id="gpt-slurm-4242", save_dir=str(tmp_path), offline=True)
    assert logger._wandb_init["id"] == "gpt-slurm-4242"
    assert logger._wandb_init["resume"] == "allow"


@pytest.mark.parametrize(
    "env, expected",
    [
        (BATCH_JOB, "4242"),
        ({**BATCH_JOB, "SLURM_ARRAY_JOB_ID": "4240", "SLURM_ARRAY_TASK_ID": "2"}, "4240_2"),
        ({**BATCH_JOB, "SLURM_JOB_NAME": "bash"}, None),  # srun --pty bash: interactive
        ({**BATCH_JOB, "SLURM_JOB_NAME": "interactive"}, None),
        ({"SLURM_JOB_ID": "4242"}, None),  # salloc, no task started by srun
        ({}, None),
    ],
)
def test_the_job_id_only_in_a_batch_job(env, expected):
    assert slurm_job_id(env) == expected


def test_a_given_id_another_logger_and_no_slurm_change_nothing():
    given = wandb_config()
    given.trainer.logger.init_args.id = "mine"
    keep_wandb_run_across_requeues(given, BATCH_JOB)
    assert given.trainer.logger.init_args.id == "mine"

    csv = Namespace(
        trainer=Namespace(
            logger=Namespace(
                class_path="lightning.pytorch.loggers.CSVLogger", init_args=Namespace(id=None)
            )
        )
    )
    keep_wandb_run_across_requeues(csv, BATCH_JOB)
    assert csv.trainer.logger.init_args.id is None

    outside = wandb_config()
    keep_wandb_run_across_requeues(outside, {})
    assert outside.trainer.logger.init_args.id is None
    keep_wandb_run_across_requeues(Namespace(trainer=Namespace(logger=False)), BATCH_JOB)
