"""Finding a corpus: its files in the data folder, else downloaded there once (with a network),
else a clear error that names the folder, the files looked for and how to provide them."""

from __future__ import annotations

import logging
from pathlib import Path

from core.errors import DataError
from core.hub import hub_offline
from datamodules.paths import reachable

log = logging.getLogger(__name__)


class CorpusFolder:
    """Mixin of the datamodules: `files` finds the corpus or fetches it.

    A datamodule sets `corpus` (its folder name under $DATA_DIR), `source_url` (checked for
    reachability before a download), `data_dir` and `download`, and provides `local_files`,
    `expected_files` and `fetch`."""

    corpus: str = ""
    source_url: str = ""
    data_dir: Path
    download: bool

    def local_files(self):
        """The corpus files found in `data_dir`, or None when the corpus is not there."""
        raise NotImplementedError

    def expected_files(self) -> list[str]:
        """File names looked for, for the error message when the corpus is missing."""
        raise NotImplementedError

    def fetch(self) -> None:
        """Download the corpus into `data_dir` (only called when it is missing)."""
        raise NotImplementedError

    def files_present(self, names: dict) -> dict | None:
        """`names` (key: file name) as paths in `data_dir`, or None unless every one is a file:
        what `local_files` returns for a corpus of fixed file names."""
        files = {key: self.data_dir / name for key, name in names.items()}
        return files if all(path.is_file() for path in files.values()) else None

    @property
    def files(self):
        files = self.local_files()
        if files is None:
            self._fetch_or_fail()
            files = self.local_files()
            if files is None:
                raise DataError(
                    self._missing_message("the download finished but the files are still missing")
                )
        return files

    def _fetch_or_fail(self) -> None:
        if not self.download:
            raise DataError(
                self._missing_message("downloading is off (data.init_args.download=false)")
            )
        if hub_offline():
            raise DataError(self._missing_message("HF_HUB_OFFLINE / HF_DATASETS_OFFLINE is set"))
        if not reachable(self.source_url):
            raise DataError(
                self._missing_message(f"{self.source_url} cannot be reached (offline?)")
            )
        log.info("%s not found in %s: downloading", self.corpus, self.data_dir)
        try:
            self.fetch()
        except DataError:
            raise
        except Exception as err:  # no network, hub unreachable, ...
            raise DataError(
                self._missing_message(f"downloading failed ({type(err).__name__}: {err})")
            ) from err

    def _missing_message(self, why: str) -> str:
        looked = ", ".join(self.expected_files())
        return (
            f"{self.corpus}: corpus not found in {self.data_dir} (looked for {looked}), and {why}.\n"
            f"Provide it by putting those files there, by pointing data.init_args.data_dir (or the DATA_DIR "
            f"environment variable, which holds one folder per corpus) at a copy, or by running "
            f"once with a network so that it is downloaded."
        )
