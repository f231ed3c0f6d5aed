"""Multi30k (Elliott et al. 2016), task 1: 31,014 Flickr30k image captions in English with
German translations, the standard small translation benchmark (pytorch-seq2seq, bentrevett).

Local layout read from `data_dir` ($DATA_DIR/multi30k): `{train,val,test_2016_flickr}.{de,en}`,
gzipped (`.gz`) or plain; 29,000 / 1,014 / 1,000 pairs, line i of `.de` translating line i of
`.en`. Missing files are fetched from the HF hub (`bentrevett/multi30k`, columns en/de, splits
train/validation/test) with `datasets` and written in the same layout.
"""

from __future__ import annotations

import os
from pathlib import Path

from core.errors import DataError
from core.files import atomic_write_bytes
from datamodules.translation import TranslationDataModule, read_sentences

HUB_DATASET = "bentrevett/multi30k"
FILE_STEMS = {"train": "train", "val": "val", "test": "test_2016_flickr"}
HUB_SPLITS = {"train": "train", "val": "validation", "test": "test"}


class Multi30kDataModule(TranslationDataModule):
    """Multi30k German-English, de->en by default (source_lang/target_lang: "de", "en")."""

    corpus = "multi30k"
    languages = ("de", "en")
    source_url = f"{os.environ.get('HF_ENDPOINT', 'https://huggingface.co')}/datasets/{HUB_DATASET}"

    def _file(self, split: str, lang: str) -> Path | None:
        """The split's file for `lang`, gzipped or plain, or None."""
        plain = self.data_dir / f"{FILE_STEMS[split]}.{lang}"
        for path in (plain.with_name(plain.name + ".gz"), plain):
            if path.is_file():
                return path
        return None

    def local_files(self) -> list[Path] | None:
        files = [self._file(split, lang) for split in FILE_STEMS for lang in self.languages]
        return None if None in files else files

    def expected_files(self) -> list[str]:
        return [f"{stem}.{lang}[.gz]" for stem in FILE_STEMS.values() for lang in self.languages]

    def read_splits(self, files: list[Path]) -> dict[str, dict[str, list[str]]]:
        splits = {}
        for split in FILE_STEMS:
            paths = {lang: self._file(split, lang) for lang in self.languages}
            sentences = {lang: read_sentences(path) for lang, path in paths.items()}
            (a, b) = self.languages
            if len(sentences[a]) != len(sentences[b]):
                raise DataError(
                    f"{self.corpus}: {paths[a]} has {len(sentences[a])} lines but {paths[b]} has "
                    f"{len(sentences[b])}; line i of one must translate line i of the other. "
                    f"Replace both with a matching copy of the corpus."
                )
            splits[split] = sentences
        return splits

    def fetch(self) -> None:
        import datasets

        ds = datasets.load_dataset(HUB_DATASET)
        for split, hub_split in HUB_SPLITS.items():
            for lang in self.languages:
                # One sentence a line: a stray newline inside a sentence would shift the pairing.
                text = "".join(s.replace("\n", " ").strip() + "\n" for s in ds[hub_split][lang])
                path = self.data_dir / f"{FILE_STEMS[split]}.{lang}"
                atomic_write_bytes(path, text.encode("utf-8"))
