"""One results table for the whole suite, made from bench/results/*.json: the README's
`## Results` block, between its `<!-- results:start -->` and `<!-- results:end -->` markers,
and a learning-curve figure per bench family whose results hold curves.

    python bench/report.py            # rewrite the README block and bench/results/curves/*.png
    python bench/report.py --check    # exit 1 when the README's block is not what the JSONs give

A row is one figure of one config (or bench): the figure with its metric named exactly, what it
is held against and where that comes from ("—" where nothing is), the machine, the command
that produced it and the date. Several seeds give mean ± std (sample standard deviation). Each
family of results files has one small extractor below; a file no extractor knows, or one whose
shape its extractor does not recognise, is named in a "Not in the table" line, and
`*-quick.json` (plumbing checks) are skipped. The table is generated: edit the extractors, never
the README block.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import re
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from core.files import atomic_path, atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
README = ROOT / "README.md"
START, END = "<!-- results:start -->", "<!-- results:end -->"
NONE = "—"
# A folder of the machine a command ran on, before the repository's own paths: dropped.
FOLDERS = re.compile(r"(?<![\w.])/\S*?/(?=main\.py|configs/|bench/)")


@dataclass(frozen=True)
class Row:
    config: str  # the config (or bench) the figure belongs to
    figure: str
    metric: str  # what the figure is, exactly
    anchor: str = NONE  # what it is held against, and where that figure comes from
    command: str | None = None  # None: the results file's own
    machine: str | None = None  # None: the results file's own


# --- shared pieces -------------------------------------------------------------------------


def mean_std(values: list[float], fmt: str = ".3f") -> str:
    """One value as it is; several (seeds) as mean ± sample std, with their count."""
    if len(values) == 1:
        return format(values[0], fmt)
    mean, std = statistics.mean(values), statistics.stdev(values)
    return f"{mean:{fmt}} ± {std:{fmt}} ({len(values)} seeds)"


def machine_of(data: dict) -> str:
    """The GPU's name, else the CPU with its cores (and threads, when the file says)."""
    m = data.get("machine") or {"cpu": data.get("cpu"), "cores": data.get("cpu_count")}
    if m.get("gpu"):
        return m["gpu"]
    threads = m.get("threads", data.get("threads"))
    text = f"{m.get('cpu') or 'CPU'}, {m.get('cores') or '?'} cores"
    return text + (f", {threads} thread{'s' * (threads != 1)}" if threads else "")


def date_of(data: dict) -> str:
    date = (data.get("machine") or {}).get("date") or data.get("date") or NONE
    return date[:10]


def command_of(data: dict, name: str) -> str:
    """The command recorded in the file (folders of the machine it ran on dropped), else the
    script that writes it."""
    command = data.get("command")
    if not command:
        return f"`python bench/{family_of(name)}.py` (arguments not recorded)"
    return f"`{FOLDERS.sub('', command).strip()}`"


def config_in(command: str) -> str:
    """`configs/<name>.yaml` of a `main.py ... --config PATH` command."""
    found = re.search(r"--config[ =](\S+)", command)
    return f"configs/{Path(found.group(1)).name}" if found else NONE


def percent(x: float) -> str:
    return f"{100 * x:.1f}%"


def overrides_of(run: dict) -> dict[str, str]:
    """A run's `--set KEY=VALUE` overrides, as recorded in its results."""
    return dict(o.split("=", 1) for o in run.get("overrides") or [])


@functools.cache
def config_yaml(relative: str) -> dict:
    """A config of the repository (`configs/<name>.yaml`), read once."""
    return yaml.safe_load((ROOT / relative).read_text())


# --- one extractor per family of results files --------------------------------------------


def cpu_recipe(d: dict) -> list[Row]:
    seeds = d.get("seeds") or [d]
    ref = d["nanogpt"]
    config = config_in(d["command"])
    command = "`python bench/cpu_recipe.py" + (
        f" --seeds {' '.join(str(s['seed']) for s in seeds)}`" if len(seeds) > 1 else "`"
    )
    return [
        Row(
            config,
            mean_std([s["val_loss_final"] for s in seeds]),
            f"val/loss at step {d['steps']} (nats per character, the whole val split)",
            f"nanoGPT's shakespeare_char CPU recipe: {ref['val_loss']} (20-batch estimate)",
            command,
        ),
        Row(
            config,
            mean_std([s["train_tokens_per_s"] for s in seeds], ",.0f"),
            "training tokens/s",
            f"nanoGPT, same recipe: {ref['tokens_per_s']:,.0f} tokens/s ({ref['ms_per_step']:g} ms a step)",
            command,
        ),
    ]


def nanogpt_estimate(d: dict) -> list[Row]:
    return [
        Row(
            f"cpu_recipe's checkpoint `{Path(d['checkpoint']).name}`",
            f"{d['mean']:.3f} ± {d['sd']:.3f} ({d['repeats']} estimates)",
            f"val loss by nanoGPT's estimate_loss ({d['eval_iters']} random batches an estimate)",
            f"nanoGPT: {d['nanogpt_val_loss']}",
        )
    ]


def lstm_wikitext2(d: dict) -> list[Row]:
    a, config = d["anchor"], config_in(d["command"])
    return [
        Row(
            config,
            f"{d['test_ppl']:.1f}",
            f"test/ppl on {d['data']} after {len(d['epochs'])} epochs (best epoch's checkpoint)",
            f"{a['source']}: test ppl {a['test_ppl']:g} ({a['epochs']} epochs)",
        ),
        Row(
            config,
            f"{d['epochs'][-1]['val_ppl']:.1f}",
            f"val/ppl on {d['data']} at epoch {d['epochs'][-1]['epoch']}",
            f"{a['source']}: val ppl {a['val_ppl']:g}",
        ),
    ]


def names_quality(d: dict) -> list[Row]:
    rows = []
    for r in d["runs"]:
        rows.append(
            Row(
                r["config"],
                f"{r['val_loss']:.3f}",
                "val/loss (nats per character, end token counted), best checkpoint",
                f"<= {r['target_val_loss']} (makemore lectures' figure)",
            )
        )
        rows.append(Row(r["config"], f"{r['test_loss']:.3f}", "test/loss (same units)"))
    return rows


def sentiment_quality(d: dict) -> list[Row]:
    return [
        Row(
            r["config"] + "".join(f" {o}" for o in r["overrides"] if "init_args" in o),
            percent(r["test_acc"]),
            "test/acc on whole SST-2 sentences held out of training (carved from the offline "
            f"copy; val/acc {percent(r['val_acc'])} on another such set)",
            f">= {percent(r['target_test_acc'])} (the bench's target)",
        )
        for r in d["runs"]
    ]


def few_shot(d: dict) -> list[Row]:
    config, rows = d["model"]["config"], []
    for name, report in d["reports"].items():
        for r in report["results"]:
            plain, calibrated = r["accuracy"], r["calibrated"]
            rows.append(
                Row(
                    f"{config}, {name} prompt",
                    f"{mean_std(plain['per_seed'])}; calibrated {mean_std(calibrated['per_seed'])}",
                    f"accuracy, {r['k']}-shot, on {report['examples']} {report['source']} dev examples",
                    f"majority label: {report['majority']:.3f}",
                )
            )
    return rows


def dpo_sentiment(d: dict) -> list[Row]:
    t = d["targets"]
    target = (
        f">= {percent(t['positive_share'])} positive, held-out ppl at most "
        f"{percent(t['max_ppl_rise'])} above SFT (the bench's targets)"
    )
    return [
        Row(
            f"dpo_sentiment: {r['model']}",
            f"{percent(r['positive_share'])} positive; ppl {r['heldout_ppl']:.1f}",
            f"share of continuations the SST-2 classifier (val acc {percent(d['judge']['val_acc'])}) "
            f"judges positive, {d['eval_prompts']} openings x {d['samples_per_prompt']}; "
            "held-out review perplexity",
            target if r["model"].startswith("DPO") else NONE,
        )
        for r in d["table"]
    ]


def tabular_quality(d: dict) -> list[Row]:
    rows = []
    for r in d["results"]:
        if "by_split" in r:  # tabular_quality-splits.json: means over seeded splits
            n = len(r["by_split"])
            baselines = ", ".join(f"{k} {v:.3f}" for k, v in r["means"].items() if k != "mlp")
            spread = statistics.stdev(r["mlp_by_split"]) if n > 1 else 0.0
            rows.append(
                Row(
                    r["config"],
                    f"{r['means']['mlp']:.3f} ± {spread:.3f} ({n} splits)",
                    f"{r['metric'].replace(' ', '/')}, mean over {n} seeded 65/15/20 splits",
                    f"scikit-learn on the same splits: {baselines}",
                )
            )
            continue
        baselines = ", ".join(f"{k} {v:.3f}" for k, v in r["baselines"].items())
        rows.append(
            Row(
                r["config"],
                mean_std(r["mlp_by_seed"]),
                f"{r['metric'].replace(' ', '/')} (seeded 65/15/20 split)",
                f"scikit-learn on the same split: {baselines}",
            )
        )
    return rows


def tabular_cv(d: dict) -> list[Row]:
    """bench/tabular_cv.py: how a tabular config's settings were chosen."""
    best = d["best"]
    settings = ", ".join(f"{k} {v}" for k, v in best.items() if k != "cv_acc")
    config = d["command"].split("--config", 1)[1].split()[0] if "--config" in d["command"] else "?"
    return [
        Row(
            f"configs/{config}.yaml, settings chosen by 5-fold CV ({settings})",
            f"{best['cv_acc']:.3f}",
            "cross-validated accuracy on the train and val rows (test rows never read)",
            f"LogisticRegression on the same folds: {d['logistic_regression_cv_acc']:.3f}",
        )
    ]


def wide_deep_quality(d: dict) -> list[Row]:
    return [
        Row(
            r["config"],
            f"{r['test_acc']:.3f} (AUROC {r['test_auroc']:.3f})",
            "test/acc (test/auroc) on UCI Adult, seeded 80/10/10 split",
            NONE
            if r["target_test_acc"] is None
            else f">= {r['target_test_acc']} (the bench's target)",
        )
        for r in d["runs"]
    ]


def deep_gradients(d: dict) -> list[Row]:
    return [
        Row(
            f"configs/deep_mlp_digits.yaml, {r['variant']}",
            f"{r['test_acc']:.3f}",
            f"test/acc on digits after {r['epochs']} epochs (20 layers)",
        )
        for r in d["runs"]
    ]


def long_range(d: dict) -> list[Row]:
    cells: dict[str, list[dict]] = {}
    for r in d["adding"]:
        cells.setdefault(r["cell"], []).append(r)
    return [
        Row(
            f"long_range: {cell}",
            " / ".join(f"{r['test_mse']:.4f}" for r in runs),
            "adding problem test MSE at T = " + " / ".join(str(r["seq_len"]) for r in runs),
            f"always answering 1: {d['baseline_mse']:.3f}",
        )
        for cell, runs in cells.items()
    ]


def interruptions(d: dict) -> list[Row]:
    drills = d["drills"]
    kills = sum(len(x["kills"]) for x in drills)
    return [
        Row(
            "interruptions (tiny GPT)",
            f"{max(abs(x['val_loss_diff']) for x in drills):g}",
            f"largest |val loss difference| after {kills} SIGKILLs and resumes, {len(drills)} seeds",
            f"the same fit uninterrupted: val loss {d['uninterrupted']['val_loss']:.4f}; target 0",
        )
    ]


def generation(d: dict) -> list[Row]:
    rows = d["rows"]
    return [
        Row(
            f"generation: GPT {d['model']['params'] / 1e6:.1f}M, block {d['model']['block_size']}",
            " / ".join(f"{r['speedup']:.1f}x" for r in rows),
            "new tokens/s with the KV cache over recomputing, at "
            + " / ".join(str(r["new_tokens"]) for r in rows)
            + " new tokens (same tokens)",
            ">= 5x at 1024 tokens (README, Speed)",
        )
    ]


def compile_cpu(d: dict) -> list[Row]:
    return [
        Row(
            "compile_cpu: the CPU-recipe GPT",
            f"{d['compiled_over_eager_steps_per_s']:.2f}x",
            f"steps/s with `compile: true` over eager, {d['steps']} steps, median of "
            + ", ".join(f"{r:.2f}" for r in d["round_ratios"])
            + f"; compiling {d['compile_cost_s']:.0f} s",
            "the same loss curve: "
            + (
                f"within {d['loss_curve_max_rel_diff']:.1e}"
                if d["same_loss_curve"]
                else "NOT the same"
            ),
        )
    ]


def gpu_check(d: dict) -> list[Row]:
    """The GPU figures: only from bench/gpu_check.sh, each row naming the GPU."""
    gpu, checks, rows = d.get("gpu") or "no GPU", d.get("checks", {}), []
    if "precision_auto" in checks:
        c = checks["precision_auto"]
        rows.append(Row(f"gpu_check ({gpu})", c.get("precision", "-"), "`precision: auto` trains"))
    mfu = checks.get("mfu", {})
    for name in ("eager", "compiled"):
        if name in mfu:
            r, spec = mfu[name], mfu[name].get("mfu_of_spec")
            of = f"{spec:.0%} of the bf16 peak, " if spec else ""
            rows.append(
                Row(
                    f"gpu_check ({gpu}): GPT-2-small, {name}",
                    f"{r['tokens_per_s']:,.0f}",
                    f"training tokens/s; MFU {of}{r['mfu_of_measured_matmul']:.0%} of a bf16 matmul",
                )
            )
    ddp = checks.get("ddp", {})
    if ddp.get("scaling_efficiency"):
        rows.append(
            Row(
                f"gpu_check ({gpu}): DDP, 2 GPUs",
                f"{ddp['scaling_efficiency']:.0%}",
                "scaling efficiency: 2-GPU tokens/s over twice 1-GPU",
            )
        )
    if "qlora" in checks and "last_loss" in checks["qlora"]:
        q = checks["qlora"]
        rows.append(
            Row(
                f"gpu_check ({gpu}): QLoRA",
                f"{q['first_loss']:.2f} -> {q['last_loss']:.2f}",
                "training loss, 4-bit base, a few steps",
            )
        )
    gen = checks.get("generation", {})
    if "speedup" in gen:
        rows.append(
            Row(
                f"gpu_check ({gpu}): generation",
                f"{gen['with_cache']:,.0f}",
                f"new tokens/s with the KV cache ({gen['speedup']:.1f}x without)",
            )
        )
    return rows


def rnn_cells(d: dict) -> list[Row]:
    return [
        Row(
            f"rnn_cells: {r['cell']}",
            f"{r['scratch_layers_tokens_per_s']:,.0f}",
            "training tokens/s of the hand-written cell, recurrent layers alone",
            f"torch's fused layer, same run: {r['torch_layers_tokens_per_s']:,.0f}",
        )
        for r in d["rows"]
    ]


def train_throughput(d: dict) -> list[Row]:
    return [
        Row(
            "train_throughput: the CPU-recipe GPT",
            f"{d['lightning']['tokens_per_s']:,.0f}",
            f"training tokens/s through Lightning, {d['steps']} steps x {d['rounds']} rounds",
            f"a plain PyTorch loop, same run: {d['plain']['tokens_per_s']:,.0f} "
            "(target: Lightning >= 0.95x, README, Speed)",
        )
    ]


def lora_imported(d: dict) -> list[Row]:
    return [
        Row(
            f"lora_imported: {r['config']} ({r['parameters'] / 1e6:.1f}M)",
            f"{r['fwd_bwd_tokens_per_s']['suite']:,.0f}",
            "forward + backward tokens/s of the suite's model",
            f"the same model in transformers, same run: {r['fwd_bwd_tokens_per_s']['transformers']:,.0f}",
        )
        for r in d["results"]
    ]


def lora_vs_full(d: dict) -> list[Row]:
    full = next(r for r in d["results"] if r["method"] == "full")
    return [
        Row(
            f"lora_vs_full: {r['method']}",
            f"{r['val_loss']:.3f}",
            f"val loss after {d['settings']['steps']} fine-tuning steps ({r['trainable']:,} trainable)",
            NONE if r is full else f"full fine-tuning, same run: {full['val_loss']:.3f}",
        )
        for r in d["results"]
    ]


def word2vec_vs_gensim(d: dict) -> list[Row]:
    return [
        Row(
            "word2vec skip-gram (negative sampling)",
            f"{d['top10_overlap_suite_vs_gensim']:.3f}",
            "top-10 neighbour overlap with gensim's vectors",
            f"two gensim runs, other seeds: {d['top10_overlap_gensim_seed1_vs_seed2']:.3f}",
        ),
        Row(
            "word2vec skip-gram (negative sampling)",
            f"{d['suite']['words_per_s']:,}",
            "training words/s",
            f"gensim Word2Vec (workers=1), same run: {d['gensim']['words_per_s']:,}",
        ),
    ]


# What translation_quality.json files written before it named its figures (`metrics`) hold:
# the shipped Multi30k configs lower-case their text, so `test_bleu` is lower-cased there.
TRANSLATION_METRICS = {
    "test_bleu": "SacreBLEU 13a lower-cased (torchmetrics), beam 5",
    "test_bleu_tok": "BLEU on lower-cased word tokens (the notebooks' torchtext bleu_score), beam 5",
}
NOTEBOOK = {"seq2seq_multi30k": 1, "seq2seq_attention_multi30k": 3, "transformer_multi30k": 6}


def translation_lowercase(run: dict) -> bool:
    """Whether a run's text was lower-cased: its own record, else its `--set` overrides, else
    true (every run before the record was on lower-cased text)."""
    if run.get("lowercase") is not None:
        return run["lowercase"]
    sets = overrides_of(run)
    return sets.get("data.init_args.lowercase", "true") != "false"


def translation_tokenizer(run: dict) -> str:
    """A run's tokenizer: its own record, else its `--set` overrides, else the word vocabulary
    (every config said `tokenizer: word` until the record came, b25ebd7 then b802141)."""
    return run.get("tokenizer") or overrides_of(run).get("data.init_args.tokenizer", "word")


def translation_label(run: dict) -> str:
    """The config, with its tokenizer and case."""
    case = "lower-cased" if translation_lowercase(run) else "cased"
    return f"{run['config']}, {translation_tokenizer(run)} tokenizer, {case} text"


def translation_shown(d: dict, run: dict) -> dict[str, str]:
    """The figures of a run the table shows: key -> what it is, exactly."""
    shown = {}
    for key, metric in d.get("metrics", TRANSLATION_METRICS).items():
        if run.get(key) is None:
            continue
        if key == "test_bleu":  # torchmetrics' SacreBLEU: cased, the same as sacrebleu_cased
            if not translation_lowercase(run):
                continue
            metric = TRANSLATION_METRICS["test_bleu"]
        shown[key] = f"{metric}, Multi30k test_2016_flickr"
    return shown


def translation_anchor(key: str, run: dict) -> str:
    if key != "test_bleu_tok" or run.get("target_bleu") is None:
        return NONE
    notebook = NOTEBOOK.get(Path(run["config"]).stem, "?")
    return f"pytorch-seq2seq notebook {notebook}: ~{run['target_bleu']:g}"


def translation_quality(d: dict) -> list[Row]:
    return [
        Row(translation_label(r), f"{r[key]:.1f}", metric, translation_anchor(key, r))
        for r in d["runs"]
        for key, metric in translation_shown(d, r).items()
    ]


def translation_seed(run: dict) -> int:
    """The seed a run trained with: its `--set seed_everything=N`, else the shared default."""
    sets = overrides_of(run)
    if "seed_everything" in sets:
        return int(sets["seed_everything"])
    return config_yaml("configs/defaults.yaml")["seed_everything"]


def translation_setting(run: dict) -> tuple:
    """What a run trained, but for its seed: runs of one setting are seeds of one figure."""
    epochs = run.get("max_epochs")
    if epochs is None and (ROOT / run["config"]).exists():  # None: the config's own
        epochs = config_yaml(run["config"])["trainer"]["max_epochs"]
    facts = ("seed_everything=", "data.init_args.tokenizer=", "data.init_args.lowercase=")
    others = sorted(o for o in run.get("overrides") or [] if not o.startswith(facts))
    return (translation_label(run), epochs, run.get("num_beams"), *others)


def translation_spread(report: Report, files: dict[str, dict]) -> None:
    """Runs of one setting over several seeds (`bench/translation_quality.py --set
    seed_everything=N`, each in its own file) become one row per figure, mean ± std with each
    seed's value, in place of their own rows."""
    groups: dict[tuple, list[tuple[str, dict, dict]]] = {}
    for name, d in files.items():
        for run in d["runs"]:
            groups.setdefault(translation_setting(run), []).append((name, d, run))
    for runs in groups.values():
        seeds = [translation_seed(run) for _, _, run in runs]
        if len(runs) < 2 or len(set(seeds)) < len(seeds):
            continue
        own = {(name, translation_label(run)) for name, _, run in runs}
        at = next(i for i, (row, _, name) in enumerate(report.rows) if (name, row.config) in own)
        report.rows = [x for x in report.rows if (x[2], x[0].config) not in own]
        latest = max((d for _, d, _ in runs), key=date_of)
        command = "; ".join(command_of(d, name) for name, d, _ in runs)
        machine = "; ".join(dict.fromkeys(machine_of(d) for _, d, _ in runs))  # each once
        shown: dict[str, str] = {}  # a run older than a metric has none of it
        for _, d, run in runs:
            shown |= {k: m for k, m in translation_shown(d, run).items() if k not in shown}
        name, first = runs[0][0], runs[0][2]
        rows = []
        for key, metric in shown.items():
            measured = [
                (s, r[key])
                for s, (_, _, r) in zip(seeds, runs, strict=True)
                if r.get(key) is not None
            ]
            each = ", ".join(f"{s}: {v:.1f}" for s, v in measured)
            figure = mean_std([v for _, v in measured], ".1f")
            anchor = translation_anchor(key, first)
            row = Row(
                translation_label(first),
                figure,
                f"{metric}; seeds {each}",
                anchor,
                command,
                machine,
            )
            rows.append((row, latest, name))
        report.rows[at:at] = rows


def seeds(d: dict) -> list[Row]:
    """bench/seeds.py: a shipped config's test metrics over several seeds (`main.py repeat`)."""
    n, label = len(d["seeds"]), d["config"]
    for setting in d.get("settings", []):  # a corpus folder by its name, not its path here
        key, _, value = setting.partition("=")
        label += f", {key}={Path(value).name if key.endswith('data_dir') else value}"
    return [
        Row(
            label,
            f"{m['mean']:.4g} ± {m['std']:.2g} ({n} seeds)",
            f"{name}, best checkpoint of each seed's run",
        )
        for name, m in d["metrics"].items()
    ]


def search_mlp_names(d: dict) -> list[Row]:
    """bench/search_mlp_names.py: 20 optuna trials against the shipped config, same budget."""
    base, budget = d["shipped"], f"{d['max_steps']:,} steps"
    rows = []
    for key in ("search_median", "search_none"):
        r = d[key]
        rows.append(
            Row(
                f"configs/mlp_names.yaml, search ({d['trials']} trials, pruner {r['pruner']})",
                f"{r['best_val_loss']:.4f}; {r['steps']:,} trial-steps, {r['seconds']:.0f} s",
                f"best val/loss at {budget} a trial; training steps and wall time of the search",
                f"the shipped config at {budget}: {base['best_val_loss']:.4f} ({base['seconds']:.0f} s)",
            )
        )
    return rows


def wide_deep_test_file(d: dict) -> list[Row]:
    """A checkpoint alone tested on a file in adult.test's format, against the internal split."""
    same, given = d["internal_test_split"], d["test_file_checkpoint_only"]
    return [
        Row(
            "configs/wide_deep_adult.yaml, `test --data.init_args.test_file`",
            f"{given['test_acc']:.4f}",
            f"test/acc on {given['rows']:,} rows in adult.test's format, from the checkpoint "
            "alone (no corpus, empty cache)",
            f"the same checkpoint on its internal test split: {same['test_acc']:.4f}",
            f"`{d['commands'][-1]}`",
        )
    ]


def large_corpus(d: dict) -> list[Row]:
    """Tokenizing into memory-mapped shards: throughput against nanoGPT's prepare.py approach
    on the same text, and peak memory across corpus sizes."""
    rows, sizes = [], d["sizes"]
    for size, r in sizes.items():
        for n in (1, 2):
            ours, base = r.get(f"tokenize_{n}proc"), r.get(f"baseline_{n}proc")
            if ours and base:
                rows.append(
                    Row(
                        f"TextFolderDataModule, {size} MB corpus, {n} process{'es' if n > 1 else ''}",
                        f"{ours['encode_mb_per_s']} MB/s",
                        "BPE encoding into memory-mapped shards (tokenizer trained beforehand)",
                        f"nanoGPT-style datasets map + np.memmap, same text and processes: "
                        f"{base['encode_mb_per_s']} MB/s",
                    )
                )
    # Sizes of more than one shard: a smaller corpus never fills the writer's shard buffer.
    measured = {
        s: r
        for s, r in sizes.items()
        if "train" in r and r.get("tokenize_2proc", {}).get("shards", 0) > 1
    }
    if len(measured) > 1:
        mb = " / ".join(f"{int(s):,}" for s in measured)
        tokenizing = [r["tokenize_2proc"]["peak_rss_mb"] for r in measured.values()]
        worker = [r["tokenize_2proc"]["peak_rss_worker_mb"] for r in measured.values()]
        train = [r["train"]["peak_rss_mb"] for r in measured.values()]
        spread = max(max(x) / min(x) for x in (tokenizing, worker, train))
        rows.append(
            Row(
                f"TextFolderDataModule, corpora of {mb} MB",
                "; ".join(
                    f"{what} {' / '.join(f'{x:.0f}' for x in xs)} MB"
                    for what, xs in (
                        ("tokenize", tokenizing),
                        ("its worker", worker),
                        ("train", train),
                    )
                ),
                "peak resident memory (VmHWM) tokenizing with 2 processes, and training 200 steps",
                f"flat within 20% (the issue's target): largest over smallest {spread:.2f}",
            )
        )
    return rows


def translation_tokenizers(d: dict) -> list[Row]:
    """The shipped Transformer at the same epochs with another tokenizer (`--set` overrides)."""
    rows = []
    for r in d["runs"]:
        rows.append(
            Row(
                f"{translation_label(r)}, {r['max_epochs']} epochs",
                f"{r['test_sacrebleu_cased']:.1f} (chrF {r['test_chrf']:.1f})",
                "cased SacreBLEU 13a (and chrF2) of the detokenized output, Multi30k "
                f"test_2016_flickr, beam {r['num_beams']}",
            )
        )
    return rows


EXTRACTORS: dict[str, Callable[[dict], list[Row]]] = {
    f.__name__: f
    for f in (
        cpu_recipe,
        nanogpt_estimate,
        lstm_wikitext2,
        names_quality,
        translation_quality,
        sentiment_quality,
        few_shot,
        dpo_sentiment,
        tabular_quality,
        tabular_cv,
        wide_deep_quality,
        deep_gradients,
        long_range,
        interruptions,
        generation,
        rnn_cells,
        train_throughput,
        compile_cpu,
        gpu_check,
        lora_imported,
        lora_vs_full,
        word2vec_vs_gensim,
        seeds,
        search_mlp_names,
        wide_deep_test_file,
        large_corpus,
        translation_tokenizers,
    )
}


def family_of(name: str) -> str:
    """The bench a results file comes from: `cpu_recipe_seeds.json` and `cpu_recipe.json` are
    cpu_recipe's, `translation_quality-<config>.json` translation_quality's."""
    stem = name.removesuffix(".json")
    known = [f for f in EXTRACTORS if stem == f or stem.startswith((f + "-", f + "_"))]
    return max(known, key=len) if known else stem.split("-")[0]


# --- learning curves ------------------------------------------------------------------------


@dataclass
class Curves:
    ylabel: str
    xlabel: str = "step"
    series: list[tuple[str, list[float], list[float]]] = field(default_factory=list)
    reference: tuple[float, str] | None = None  # a horizontal line: (y, label)
    log_y: bool = False


def cpu_recipe_curves(files: dict[str, dict]) -> Curves:
    c = Curves("val/loss (nats per character)")
    for name, d in files.items():
        for s in d.get("seeds") or [d]:
            steps = sorted(s["val_loss"], key=int)
            label = f"seed {s.get('seed', '?')} ({name})"
            c.series.append((label, [int(x) for x in steps], [s["val_loss"][x] for x in steps]))
        c.reference = (d["nanogpt"]["val_loss"], "nanoGPT")
    return c


def lstm_wikitext2_curves(files: dict[str, dict]) -> Curves:
    c = Curves("val/ppl", xlabel="epoch")
    for name, d in files.items():
        c.series.append(
            (name, [e["epoch"] for e in d["epochs"]], [e["val_ppl"] for e in d["epochs"]])
        )
        c.reference = (
            d["anchor"]["val_ppl"],
            f"{d['anchor']['source']}, epoch {d['anchor']['epochs']}",
        )
    return c


def dpo_sentiment_curves(files: dict[str, dict]) -> Curves:
    c = Curves("share of continuations judged positive", xlabel="DPO step")
    for name, d in files.items():
        h = d["history"]
        c.series.append((name, [x["step"] for x in h], [x["positive_share"] for x in h]))
        c.reference = (d["targets"]["positive_share"], "target")
    return c


def long_range_curves(files: dict[str, dict]) -> Curves:
    c = Curves("training loss of a tanh RNN (log scale)", log_y=True)
    for _, d in files.items():
        for e in d["exploding"]:
            kept = [(i, x) for i, x in enumerate(e["losses"]) if math.isfinite(x)]
            label = "no clipping" if e["clip"] is None else f"gradients clipped to {e['clip']:g}"
            c.series.append((label, [i for i, _ in kept], [x for _, x in kept]))
    return c


CURVES: dict[str, Callable[[dict[str, dict]], Curves]] = {
    "cpu_recipe": cpu_recipe_curves,
    "lstm_wikitext2": lstm_wikitext2_curves,
    "dpo_sentiment": dpo_sentiment_curves,
    "long_range": long_range_curves,
}


def curve_path(family: str) -> str:
    return f"bench/results/curves/{family}.png"


def draw(family: str, curves: Curves, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4))
    for label, xs, ys in curves.series:
        ax.plot(xs, ys, marker="." if len(xs) < 30 else None, label=label)
    if curves.reference:
        y, label = curves.reference
        ax.axhline(y, color="grey", ls="--", lw=1, label=label)
    if curves.log_y:
        ax.set_yscale("log")
    ax.set(title=family, xlabel=curves.xlabel, ylabel=curves.ylabel)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", metadata={"Software": None})  # no version: stable bytes
    plt.close(fig)


# --- the table ------------------------------------------------------------------------------


@dataclass
class Report:
    rows: list[tuple[Row, dict, str]] = field(default_factory=list)  # (row, its file, file name)
    left_out: list[str] = field(default_factory=list)  # "name (why)"
    curves: dict[str, Curves] = field(default_factory=dict)
    without_curves: list[str] = field(default_factory=list)
    cased_pending: list[str] = field(default_factory=list)  # translation configs


def collect(results: Path) -> Report:
    report, by_family = Report(), {}
    measured_cased = []  # translation configs with a cased figure in some run
    for path in sorted(results.glob("*.json")):
        if path.stem.endswith("-quick"):
            continue  # a check of the plumbing, not a figure
        family = family_of(path.name)
        extract = EXTRACTORS.get(family)
        if extract is None:
            report.left_out.append(f"{path.name} (no extractor for it in bench/report.py)")
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            rows = extract(data)
        except (ValueError, KeyError, TypeError, AttributeError, StopIteration) as err:
            report.left_out.append(
                f"{path.name} (a shape {family}'s extractor does not know: {err!r})"
            )
            continue
        report.rows += [(row, data, path.name) for row in rows]
        by_family.setdefault(family, {})[path.name] = data
        if family == "translation_quality":
            for run in data["runs"]:
                cased = "test_sacrebleu_cased" in run
                (measured_cased if cased else report.cased_pending).append(Path(run["config"]).stem)
    translation_spread(report, by_family.get("translation_quality", {}))
    for family, files in by_family.items():
        if family in CURVES:
            try:
                report.curves[family] = CURVES[family](files)
            except (KeyError, TypeError) as err:
                report.left_out.append(f"{family}'s curves ({err!r})")
        else:
            report.without_curves.append(family)
    report.cased_pending = [c for c in report.cased_pending if c not in measured_cased]
    return report


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render(report: Report) -> str:
    """The README block between the markers (the markers excluded)."""
    lines = [
        "<!-- generated by `python bench/report.py` from bench/results/*.json: edit those, not this -->",
        "",
        "| config / bench | figure | metric | held against (source) | machine | command | date |",
        "|---|---|---|---|---|---|---|",
    ]
    for row, data, name in report.rows:
        command = row.command or command_of(data, name)
        fields = (
            row.config,
            row.figure,
            row.metric,
            row.anchor,
            row.machine or machine_of(data),
            command,
            date_of(data),
        )
        lines.append("| " + " | ".join(cell(f) for f in fields) + " |")
    lines.append("")
    if report.cased_pending:
        lines.append(
            f"Cased SacreBLEU and chrF (`test/sacrebleu_cased`, `test/chrf`) of "
            f"{', '.join(f'`{c}`' for c in report.cased_pending)}: not measured yet; they come with "
            "the next run of `python bench/translation_quality.py` (the BLEU figures above are "
            "lower-cased).\n"
        )
    if report.curves:
        links = ", ".join(f"[{f}]({curve_path(f)})" for f in report.curves)
        lines.append(f"Learning curves: {links}.\n")
    if report.left_out:
        lines.append(f"Not in the table: {'; '.join(report.left_out)}.\n")
    return "\n".join(lines)


def readme_block(readme: str) -> tuple[int, int]:
    """Where the generated block starts and ends in the README's text."""
    start, end = readme.find(START), readme.find(END)
    if start < 0 or end < start:
        raise SystemExit(f"README.md has no {START} ... {END} block for the results table")
    return start + len(START), end


def with_block(readme: str, block: str) -> str:
    start, end = readme_block(readme)
    return readme[:start] + "\n" + block + "\n" + readme[end:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare, write nothing")
    parser.add_argument("--results", type=Path, default=RESULTS, help=argparse.SUPPRESS)
    parser.add_argument("--readme", type=Path, default=README, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    report = collect(args.results)
    readme = args.readme.read_text(encoding="utf-8")
    wanted = with_block(readme, render(report))
    if args.check:
        if wanted == readme:
            return 0
        old, new = readme.splitlines(), wanted.splitlines()
        first = next((i for i, (a, b) in enumerate(zip(old, new, strict=False)) if a != b), None)
        line = min(len(old), len(new)) if first is None else first
        print(
            f"{args.readme.name}'s results table differs from bench/results/*.json from line "
            f"{line + 1}: run `python bench/report.py`"
        )
        return 1
    atomic_write_text(args.readme, wanted)
    print(f"written: {args.readme} ({len(report.rows)} rows)")
    for family, curves in report.curves.items():
        draw(family, curves, args.results / "curves" / f"{family}.png")
        print(f"written: {curve_path(family)}")
    if report.without_curves:
        print(f"no learning curves in the results of: {', '.join(report.without_curves)}")
    for entry in report.left_out:
        print(f"not in the table: {entry}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
