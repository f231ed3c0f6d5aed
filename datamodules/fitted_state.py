"""What a datamodule learned from its train split (vocabularies, tokenizers, category maps,
standardisation statistics, class names), saved in every checkpoint and restored from it, so
that a checkpoint alone evaluates a new file exactly as the model was trained: nothing is
refitted on the file evaluated.

A datamodule mixes in `FittedState` and provides two methods:

    fitted_state()          -> dict of plain data (dict, list, str, int, float, bool, None):
                               its artefacts, fitted on train when first asked for
    restore_fitted(state)   takes such a dict and uses it from then on instead of fitting

Lightning calls `state_dict()` when it saves a checkpoint and stores the dict under the class's
name; on `fit/validate/test/predict(ckpt_path=...)` it calls `load_state_dict()` with it, but
only after `prepare_data()` and `setup()` have run (lightning/pytorch/trainer/trainer.py
`_run`, then checkpoint_connector.py `_restore_modules_and_callbacks`). So a datamodule
builds its datasets when a dataloader first asks for them, not in `setup`, and a restore
drops any it built already (`restored()`). The suite's CLI restores the state earlier still,
as soon as it builds the datamodule from a config beside `--ckpt_path` (cli/app.py), because
the facts it links into the model (vocab_size, ...) are read at that moment.

Plain data only: the CLI reads checkpoints with `torch.load(weights_only=True)`, which loads no
numpy array and runs no code.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

from core.errors import DataError

log = logging.getLogger(__name__)

# Bumped when a datamodule's saved state changes shape; a checkpoint of another format is
# refused with a message rather than misread.
STATE_FORMAT = 1
FORMAT_KEY = "fitted_state_format"


class FittedState:
    """Mixin of a LightningDataModule: its artefacts fitted on train go into checkpoints
    (`state_dict`) and come back from them (`load_state_dict`)."""

    is_restored: bool = False  # True once the artefacts came from a checkpoint

    def fitted_state(self) -> dict:
        """The artefacts fitted on the train split, as plain data (fits them if needed)."""
        raise NotImplementedError

    def restore_fitted(self, state: dict) -> None:
        """Use `state` (what `fitted_state` returned) instead of fitting on train."""
        raise NotImplementedError

    def restored(self) -> None:
        """Called after a restore: drop whatever was built from other artefacts."""

    # --- LightningDataModule's hooks -----------------------------------------------------
    def state_dict(self) -> dict:
        state = self.fitted_state()
        check_plain(state, type(self).__name__)
        return {FORMAT_KEY: STATE_FORMAT, **state}

    def load_state_dict(self, state_dict: Mapping) -> None:
        state = dict(state_dict)
        version = state.pop(FORMAT_KEY, None)
        if version != STATE_FORMAT:
            raise DataError(
                f"{type(self).__name__}: the checkpoint's data state has format {version}, this "
                f"version reads {STATE_FORMAT}; evaluate it with the version that trained it."
            )
        self.restore_fitted(state)
        self.is_restored = True
        self.restored()


PLAIN = (str, int, float, bool, type(None))


def check_plain(value, where: str) -> None:
    """A TypeError naming the place of the first value that `torch.load(weights_only=True)`
    would refuse (a numpy scalar or array, an object): caught when saving, not when loading."""
    if isinstance(value, dict):
        for key, item in value.items():
            check_plain(key, where)
            check_plain(item, f"{where}.{key}")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            check_plain(item, f"{where}[{i}]")
    elif type(value) not in PLAIN:  # exactly: numpy's float64 and str_ subclass float and str
        raise TypeError(f"{where}: {type(value).__name__} is not plain data for a checkpoint")


def evaluating_files(datamodule, *settings: object) -> bool:
    """True when the trainer is not fitting and one of `settings` (test_file, ...) is given:
    then the training corpus is not needed (the fitted state comes from the checkpoint)."""
    trainer = datamodule.trainer
    fitting = trainer is not None and trainer.state.fn == "fit"
    return not fitting and any(s is not None for s in settings)


def report_unseen(path: Path | str, field: str, counts: Counter, total: int, unit: str) -> None:
    """One warning line for the values of `field` never seen in training, read as unknown:
    `adult.test: native_country unseen in training in 1 of 16,281 rows, read as unknown:
    'Holand-Netherlands'`. Nothing when every value was seen."""
    unseen = sum(counts.values())
    if not unseen:
        return
    shown = ", ".join(repr(v) for v, _ in counts.most_common(5))
    more = f" and {len(counts) - 5} more" if len(counts) > 5 else ""
    log.warning(
        "%s: %s unseen in training in %d of %s %s, read as unknown: %s%s",
        path, field, unseen, f"{total:,}", unit, shown, more,
    )  # fmt: skip
