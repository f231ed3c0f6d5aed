"""bench/report.py: the README's results table is what bench/results/*.json give, a results
file of a shape the report does not know is named rather than crashing it, and seeds show as
mean ± std. No training: the report only reads JSON."""

from __future__ import annotations

import importlib.util
import json
import statistics
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture(scope="module")
def report():
    spec = importlib.util.spec_from_file_location("bench_report", BENCH / "report.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def write(folder: Path, name: str, data) -> None:
    (folder / name).write_text(data if isinstance(data, str) else json.dumps(data))


def names_run(config: str, val_loss: float) -> dict:
    return {"config": config, "val_loss": val_loss, "target_val_loss": 2.17, "test_loss": 2.2}


def test_the_readme_table_is_what_the_results_give(report, capsys):
    """The check the issue asks for: run `python bench/report.py` after a bench writes JSON."""
    assert report.main(["--check"]) == 0, capsys.readouterr().out


def test_a_stale_readme_fails_the_check_with_one_line(report, tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{report.START}\n| old | table |\n{report.END}\n")
    write(tmp_path, "names_quality.json", {"command": "c", "runs": [names_run("a.yaml", 2.1)]})
    args = ["--results", str(tmp_path), "--readme", str(readme)]
    assert report.main([*args, "--check"]) == 1
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "python bench/report.py" in out[0]
    assert report.main(args) == 0  # rewrites the block in place
    assert report.main([*args, "--check"]) == 0
    text = readme.read_text()
    assert text.startswith("# x\n") and "| a.yaml | 2.100 | val/loss" in text


def test_unknown_and_misshapen_files_are_named_not_fatal(report, tmp_path):
    write(tmp_path, "brand_new_bench.json", {"anything": 1})
    write(tmp_path, "names_quality.json", {"runs": [{"config": "a.yaml"}]})  # no val_loss
    write(tmp_path, "lstm_wikitext2.json", "{not json")
    write(tmp_path, "names_quality-quick.json", {"garbage": True})  # a plumbing check: skipped
    write(tmp_path, "wide_deep_quality.json", {"command": "c", "runs": []})
    block = report.render(report.collect(tmp_path))
    (left_out,) = [line for line in block.splitlines() if line.startswith("Not in the table")]
    for name in ("brand_new_bench.json", "names_quality.json", "lstm_wikitext2.json"):
        assert name in left_out
    assert "quick" not in block


def test_seeds_show_mean_and_std(report, tmp_path):
    losses = [1.90, 1.95, 2.00]
    seeds = [
        {"seed": s, "val_loss_final": x, "train_tokens_per_s": 1000.0, "val_loss": {"100": x}}
        for s, x in zip((1, 2, 3), losses, strict=True)
    ]
    write(
        tmp_path,
        "cpu_recipe_seeds.json",
        {
            "command": "main.py fit --config /somewhere/configs/gpt.yaml",
            "cpu": "CPU X",
            "cpu_count": 4,
            "date": "2026-01-02T03:04:05",
            "steps": 100,
            "seeds": seeds,
            "nanogpt": {"val_loss": 1.886, "ms_per_step": 57.0, "tokens_per_s": 13000.0},
        },
    )
    found = report.collect(tmp_path)
    row, data, _ = found.rows[0]
    std = statistics.stdev(losses)
    assert row.figure == f"1.950 ± {std:.3f} (3 seeds)"
    assert row.config == "configs/gpt.yaml" and "1.886" in row.anchor
    assert report.machine_of(data) == "CPU X, 4 cores" and report.date_of(data) == "2026-01-02"
    # the per-step series are this family's learning curves, one per seed
    assert [label for label, _, _ in found.curves["cpu_recipe"].series] == [
        f"seed {s} (cpu_recipe_seeds.json)" for s in (1, 2, 3)
    ]


def test_families_without_series_get_no_curves(report, tmp_path):
    write(tmp_path, "names_quality.json", {"command": "c", "runs": [names_run("a.yaml", 2.1)]})
    found = report.collect(tmp_path)
    assert found.curves == {} and found.without_curves == ["names_quality"]
    assert "Learning curves" not in report.render(found)


def test_translation_figures_name_their_bleu(report, tmp_path):
    run = {
        "config": "configs/transformer_multi30k.yaml",
        "test_bleu": 38.93,
        "test_bleu_tok": 39.16,
    }
    write(
        tmp_path,
        "translation_quality.json",
        {"command": "c", "runs": [{**run, "target_bleu": 36.0}]},
    )
    block = report.render(report.collect(tmp_path))
    assert "| 38.9 | SacreBLEU 13a lower-cased" in block
    # a run older than the tokenizer record, without overrides: the word vocabulary, lower-cased
    assert "| configs/transformer_multi30k.yaml, word tokenizer, lower-cased text | 38.9 |" in block
    assert "| 39.2 | BLEU on lower-cased word tokens" in block and "notebook 6: ~36" in block
    assert "`transformer_multi30k`: not measured yet" in block  # the cased figure comes later
    cased = {**run, "test_sacrebleu_cased": 37.5, "test_chrf": 57.2, "num_beams": 5}
    metrics = {"test_sacrebleu_cased": "SacreBLEU 13a cased (the sacrebleu package), beam 5"}
    write(
        tmp_path,
        "translation_quality-transformer_multi30k.json",
        {"runs": [cased], "metrics": metrics},
    )
    block = report.render(report.collect(tmp_path))
    assert "| 37.5 | SacreBLEU 13a cased" in block and "not measured yet" not in block


def test_translation_runs_over_seeds_become_one_row_per_figure(report, tmp_path):
    metrics = {"test_bleu_tok": "BLEU on lower-cased word tokens, beam 5", "test_chrf": "chrF2"}
    facts = {"config": "configs/transformer_multi30k.yaml", "tokenizer": "bpe", "num_beams": 5}
    runs = {  # file suffix: (its run's own settings, its BLEU)
        "": ({"max_epochs": 10, "overrides": ["data.init_args.lowercase=false"]}, 37.9),
        # max_epochs None: the config's 10; the seed from --set
        "-seed1": ({"max_epochs": None, "overrides": ["seed_everything=1"]}, 37.1),
        "-seed2": ({"max_epochs": None, "overrides": ["seed_everything=2"]}, 38.4),
        "-3epochs": ({"max_epochs": 3}, 30.0),  # another setting: a row of its own
    }
    for suffix, (settings, bleu) in runs.items():
        run = {**facts, **settings, "lowercase": False, "test_bleu_tok": bleu}
        if suffix.startswith("-seed"):  # the runs that came later measured chrF too
            run["test_chrf"] = bleu + 20
        threads = 1 if suffix == "-seed2" else 2  # one seed ran on another thread count
        machine = {"cpu": "AMD EPYC", "cores": 2, "threads": threads}
        file = {"command": f"c{suffix}", "machine": machine, "metrics": metrics, "runs": [run]}
        write(tmp_path, f"translation_quality-transformer_multi30k{suffix}.json", file)
    three, spread, chrf = (row for row, _, _ in report.collect(tmp_path).rows)
    assert three.figure == "30.0"
    values = [37.1, 38.4, 37.9]  # in the files' order
    assert spread.figure == (
        f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f} (3 seeds)"
    )
    assert spread.metric.endswith("seeds 1: 37.1, 2: 38.4, 1337: 37.9")
    assert spread.command == "`c-seed1`; `c-seed2`; `c`"
    # every machine its seeds ran on, each once, as the commands are
    assert spread.machine == "AMD EPYC, 2 cores, 2 threads; AMD EPYC, 2 cores, 1 thread"
    assert (
        chrf.figure
        == f"{statistics.mean([57.1, 58.4]):.1f} ± {statistics.stdev([57.1, 58.4]):.1f} (2 seeds)"
    )
    assert chrf.metric.endswith("seeds 1: 57.1, 2: 58.4")


def test_seed_settings_name_the_corpus_not_its_path(report, tmp_path):
    metrics = {"test/ppl": {"mean": 300.0, "std": 2.0, "values": [298.0, 300.0, 302.0]}}
    settings = ["data.init_args.data_dir=/x/y/wikitext-2-mini", "trainer.max_epochs=6"]
    seeds = {"seeds": [1, 2, 3], "settings": settings, "metrics": metrics}
    write(tmp_path, "seeds-lstm_wikitext2.json", {"config": "configs/lstm_wikitext2.yaml", **seeds})
    ((row, _, _),) = report.collect(tmp_path).rows
    assert row.config == (
        "configs/lstm_wikitext2.yaml, data.init_args.data_dir=wikitext-2-mini, trainer.max_epochs=6"
    )
    assert row.figure == "300 ± 2 (3 seeds)"


def test_large_corpus_memory_is_judged_over_sizes_of_several_shards(report, tmp_path):
    def size(shards, rss):
        tokenize = {
            "encode_mb_per_s": 2.0,
            "shards": shards,
            "peak_rss_mb": rss,
            "peak_rss_worker_mb": rss - 100,
        }
        return {"tokenize_2proc": tokenize, "train": {"peak_rss_mb": rss + 50}}

    sizes = {"20": size(1, 400.0), "100": size(4, 700.0), "1000": size(40, 770.0)}
    sizes["20"]["baseline_2proc"] = {"encode_mb_per_s": 1.0}
    write(tmp_path, "large_corpus.json", {"sizes": sizes})
    speed, memory = (row for row, _, _ in report.collect(tmp_path).rows)
    assert speed.figure == "2.0 MB/s" and "same text and processes: 1.0 MB/s" in speed.anchor
    assert memory.config == "TextFolderDataModule, corpora of 100 / 1,000 MB"  # not 20: 1 shard
    assert memory.figure == "tokenize 700 / 770 MB; its worker 600 / 670 MB; train 750 / 820 MB"
    assert memory.anchor.endswith(f"largest over smallest {670 / 600:.2f}")


def test_gpu_figures_name_their_gpu(report, tmp_path):
    checks = {
        "precision_auto": {"precision": "bf16-mixed", "ok": True},
        "mfu": {
            name: {"tokens_per_s": tps, "mfu_of_spec": 0.4, "mfu_of_measured_matmul": 0.5}
            for name, tps in (("eager", 300_000), ("compiled", 420_000))
        },
        "ddp": {"ok": None, "skipped": "1 GPU(s): DDP needs 2"},
        "generation": {"with_cache": 250.0, "speedup": 6.0, "ok": True},
    }
    machine = {"cpu": "x", "cores": 16, "threads": 16, "date": "2026-12-03 10:00"}
    write(
        tmp_path,
        "gpu_check.json",
        {
            "command": "bash bench/gpu_check.sh",
            "machine": machine,
            "gpu": "NVIDIA H200",
            "checks": checks,
        },
    )
    block = report.render(report.collect(tmp_path))
    gpu_rows = [line for line in block.splitlines() if "gpu_check" in line]
    assert len(gpu_rows) == 4  # precision, eager, compiled, generation; no DDP with one GPU
    assert all("gpu_check (NVIDIA H200)" in line for line in gpu_rows)
    assert "| 420,000 | training tokens/s; MFU 40% of the bf16 peak" in block
