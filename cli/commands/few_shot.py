"""`few_shot`: zero- and few-shot classification by prompting a causal language model, with
optional contextual calibration; accuracy per number of demonstrations k, over several seeds.

python main.py few_shot --config configs/gpt_reviews.yaml --ckpt_path LAST.ckpt --source sst2 --calibrate true
"""

from __future__ import annotations

import random
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.loggers import WandbLogger

from cli.checkpoints import load_weights
from core.errors import UserError
from core.files import atomic_path, atomic_write_text
from core.runs import run_dir
from datamodules.sentiment import Example, read_labelled_text
from lit_models import GPT, LanguageModel, LoRAGPT
from lit_models.modules.decoding import Decodable
from lit_models.modules.prompting import (
    CONTENT_FREE,
    Template,
    calibrate,
    draw_demonstrations,
    fit_prompt,
    label_log_likelihoods,
    label_probabilities,
)


@dataclass
class Run:
    """One k and one seed: its accuracies and how its prompts fit the context."""

    k: int
    seed: int
    accuracy: float
    calibrated: float | None
    kept: list[int] = field(default_factory=list)  # demonstrations kept, per prompt
    cut_tokens: int = 0  # prompts that lost query tokens too


def few_shot(
    trainer: L.Trainer,
    model: L.LightningModule,
    datamodule: L.LightningDataModule,
    ckpt_path: str | None = None,
    source: str = "sst2",
    data_dir: str | None = None,
    template: str = "Review: {text}\nSentiment: {label}",
    separator: str = "\n\n",
    label_words: list[str] | None = None,
    shots: list[int] | None = None,
    seeds: list[int] | None = None,
    calibrate: bool = False,
    max_examples: int | None = 200,
    example_seed: int = 0,
    batch_size: int = 16,
    output: str | None = None,
) -> dict:
    """Classify labelled text by prompting a causal language model: k demonstrations from the
    train split (drawn with each seed), then the query; the prediction is the label word the
    model finds most likely next. Prints accuracy per k (mean and spread over the seeds),
    writes few_shot.json and few_shot.png to the run's folder and logs a W&B table.

    Args:
        ckpt_path: the language model's checkpoint (without it: the model as built).
        source: sst2, rt-polarity, or a TSV file of text<TAB>label rows (label 0, 1, ...).
        data_dir: the folder of sst2 / rt-polarity (default $DATA_DIR/<corpus>).
        template: one example, with {text} and then {label}; `\\n` is a newline.
        separator: between the examples of a prompt.
        label_words: the word of each label, label 0 first (default: negative positive).
        shots: the numbers of demonstrations k (default 0 1 4 8).
        seeds: one draw of demonstrations each (default 1 2 3); k=0 needs none, so runs once.
        calibrate: also report contextual calibration (Zhao et al. 2021).
        max_examples: test examples scored, a seeded sample (example_seed); None: all.
        batch_size: prompts read at once.
        output: the folder for few_shot.json and .png (default: the run's folder).
    """
    label_words = label_words or ["negative", "positive"]
    shots = [0, 1, 4, 8] if shots is None else shots
    seeds = seeds or [1, 2, 3]
    check_options(model, label_words, shots, max_examples, batch_size)
    try:
        form = Template(template.replace("\\n", "\n"), separator.replace("\\n", "\n"))
    except ValueError as err:
        raise UserError(f"--template: {err}") from None
    if ckpt_path:
        load_weights(model, ckpt_path)
    model.to(trainer.strategy.root_device)

    splits = read_labelled_text(source, data_dir)
    check_labels(splits["train"] + splits["test"], label_words, source)
    encode = datamodule.encode
    labels = [encode_or_fail(encode, form.label_continuation(w), "label word") for w in label_words]
    test = sample(splits["test"], max_examples, example_seed)
    test, unexpressed = expressible(test, form, encode)
    pool, _ = expressible(splits["train"], form, encode) if max(shots) > 0 else ([], 0)
    free = content_free_inputs(form, encode) if calibrate else []
    if not test:
        raise UserError(
            f"none of the {source} test examples can be written in the model's vocabulary"
        )
    context = context_length(model)
    max_tokens = None if context is None else context - (max(map(len, labels)) - 1)

    runs = []
    for k in shots:
        if k > len(pool):
            raise UserError(f"--shots {k}: the train split has only {len(pool)} usable examples")
        for seed in seeds if k > 0 else seeds[:1]:
            demos = [(ex.text, label_words[ex.label]) for ex in draw_demonstrations(pool, k, seed)]
            run = score(model, form, demos, test, labels, encode, max_tokens, batch_size, free)
            run.seed = seed
            runs.append(run)
    report = summarise(runs, shots, test, label_words, context)
    report.update(source=source, template=form.text, separator=form.separator, seeds=seeds)
    report.update(unexpressed_test_examples=unexpressed, model=type(model).__name__)
    show(report, calibrate)
    folder = Path(output) if output else run_dir(trainer)
    write(report, folder, trainer, calibrate)
    return report


def check_options(model, label_words, shots, max_examples, batch_size) -> None:
    if not isinstance(model, LanguageModel) or not isinstance(model, Decodable):
        raise UserError(
            f"few_shot prompts a causal language model (GPT, LoRAGPT, RNNLanguageModel, ...), "
            f"not a {type(model).__name__}."
        )
    if len(label_words) < 2 or len(set(label_words)) != len(label_words):
        raise UserError(f"--label_words needs two or more different words, got {label_words}")
    if not shots or min(shots) < 0:
        raise UserError(f"--shots must be numbers of demonstrations >= 0, got {shots}")
    if max_examples is not None and max_examples < 1:
        raise UserError(f"--max_examples must be positive (or null: all), got {max_examples}")
    if batch_size < 1:
        raise UserError(f"--batch_size must be positive, got {batch_size}")


def check_labels(examples: list[Example], label_words: list[str], source: str) -> None:
    top = max(ex.label for ex in examples)
    if top >= len(label_words):
        raise UserError(
            f"{source} has label {top} but --label_words names {len(label_words)} labels "
            f"({', '.join(label_words)}): give one word for each label 0..{top}."
        )


def context_length(model) -> int | None:
    """Tokens the model reads at once: a Transformer's block_size (GPT and LoRAGPT refuse
    more). A recurrent model reads any length, and a window model (MLP, WaveNet) sees its last
    block_size tokens whatever comes before: neither needs its prompts cut."""
    return model.block_size if isinstance(model, (GPT, LoRAGPT)) else None


def encode_or_fail(encode, text: str, what: str) -> list[int]:
    try:
        return encode(text)
    except ValueError as err:
        raise UserError(f"{what} {text!r}: {err}") from None


def sample(examples: list[Example], n: int | None, seed: int) -> list[Example]:
    """`n` examples drawn with `seed` (all, in order, when n is None or not smaller)."""
    if n is None or n >= len(examples):
        return list(examples)
    return random.Random(seed).sample(examples, n)


def expressible(examples: list[Example], form: Template, encode) -> tuple[list[Example], int]:
    """The examples the model's vocabulary can write (a character tokenizer may lack some
    characters), and how many it cannot."""
    kept = []
    for ex in examples:
        try:
            encode(form.query(ex.text))
            kept.append(ex)
        except ValueError:
            pass
    return kept, len(examples) - len(kept)


def content_free_inputs(form: Template, encode) -> list[str]:
    """Zhao et al.'s content-free inputs the model's vocabulary can write."""
    usable, _ = expressible([Example(text, 0) for text in CONTENT_FREE], form, encode)
    if not usable:
        raise UserError(
            f"--calibrate: the model's vocabulary cannot write any content-free input "
            f"({', '.join(map(repr, CONTENT_FREE))}) in the template"
        )
    return [ex.text for ex in usable]


def score(model, form, demos, test, labels, encode, max_tokens, batch_size, free) -> Run:
    """Accuracy of one set of demonstrations on the test examples (and calibrated)."""
    fitted = [fit_prompt(form, demos, ex.text, encode, max_tokens) for ex in test]
    try:
        loglik = torch.cat(
            [
                label_log_likelihoods(model, [f.ids for f in fitted[i : i + batch_size]], labels)
                for i in range(0, len(fitted), batch_size)
            ]
        )
    except ValueError as err:  # an empty prompt (a template with nothing around {text}?)
        raise UserError(f"few_shot: {err}") from None
    gold = torch.tensor([ex.label for ex in test])
    probs = label_probabilities(loglik)
    calibrated = None
    if free:  # calibrating: the same demonstrations before each content-free input
        free_prompts = [fit_prompt(form, demos, text, encode, max_tokens).ids for text in free]
        free_probs = label_probabilities(label_log_likelihoods(model, free_prompts, labels))
        calibrated = accuracy(calibrate(probs, free_probs), gold)
    return Run(
        k=len(demos),
        seed=0,
        accuracy=accuracy(probs, gold),
        calibrated=calibrated,
        kept=[f.kept for f in fitted],
        cut_tokens=sum(f.cut_tokens > 0 for f in fitted),
    )


def accuracy(probs: torch.Tensor, gold: torch.Tensor) -> float:
    return (probs.argmax(dim=-1) == gold).double().mean().item()


def spread(values: list[float]) -> dict:
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "min": min(values),
        "max": max(values),
        "per_seed": values,
    }


def summarise(runs: list[Run], shots, test, label_words, context) -> dict:
    counts = [sum(ex.label == i for ex in test) for i in range(len(label_words))]
    results = []
    for k in shots:
        mine = [r for r in runs if r.k == k]
        kept = [n for r in mine for n in r.kept]
        row = {
            "k": k,
            "accuracy": spread([r.accuracy for r in mine]),
            "demonstrations_kept_mean": statistics.fmean(kept),
            "prompts_cut": sum(n < k for n in kept),
            "prompts": len(kept),
            "queries_cut": sum(r.cut_tokens for r in mine),
        }
        if mine[0].calibrated is not None:
            row["calibrated"] = spread([r.calibrated for r in mine])
        results.append(row)
    return {
        "label_words": label_words,
        "examples": len(test),
        "majority": max(counts) / len(test),
        "context": context,
        "results": results,
    }


def show(report: dict, calibrating: bool) -> None:
    def cell(s: dict) -> str:
        return f"{s['mean']:.3f} ± {s['std']:.3f}" if len(s["per_seed"]) > 1 else f"{s['mean']:.3f}"

    print(
        f"few_shot: {report['model']} on {report['source']}, {report['examples']} test examples, "
        f"label words {', '.join(report['label_words'])}; majority class {report['majority']:.3f}"
    )
    header = "    k  accuracy        " + ("calibrated      " if calibrating else "") + "kept"
    print(header)
    for row in report["results"]:
        line = f"{row['k']:>5}  {cell(row['accuracy']):<16}"
        if calibrating:
            line += f"{cell(row['calibrated']):<16}"
        print(line + f"{row['demonstrations_kept_mean']:.2f}")
    for row in report["results"]:
        note = cut_note(row, report["context"])
        if note:
            print(note)
    if report["unexpressed_test_examples"]:
        print(
            f"note: {report['unexpressed_test_examples']} test examples hold text the model's "
            "vocabulary cannot write and were left out"
        )


def cut_note(row: dict, context: int | None) -> str | None:
    """What cutting the prompts of one k to the context cost, if anything."""
    parts = []
    if row["prompts_cut"]:
        parts.append(
            f"{row['prompts_cut']} of {row['prompts']} prompts lost their oldest demonstrations "
            f"({row['demonstrations_kept_mean']:.2f} of {row['k']} kept on average)"
        )
    if row["queries_cut"]:
        parts.append(f"{row['queries_cut']} lost the start of the query")
    if not parts:
        return None
    return f"note: k={row['k']}: longer than the model's context ({context} tokens), " + "; ".join(
        parts
    )


def write(report: dict, folder: Path, trainer: L.Trainer, calibrating: bool) -> None:
    import json

    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / "few_shot.json", json.dumps(report, indent=2) + "\n")
    png = folder / "few_shot.png"
    plot(report, png, calibrating)
    print(f"few_shot: written {folder / 'few_shot.json'} and {png}")
    columns = ["k", "accuracy", "accuracy_std", "calibrated", "calibrated_std", "kept"]
    rows = [
        [
            r["k"],
            r["accuracy"]["mean"],
            r["accuracy"]["std"],
            r.get("calibrated", {}).get("mean"),
            r.get("calibrated", {}).get("std"),
            r["demonstrations_kept_mean"],
        ]
        for r in report["results"]
    ]
    for logger in trainer.loggers:
        metrics = {f"few_shot/acc_k{r['k']}": r["accuracy"]["mean"] for r in report["results"]}
        if calibrating:
            metrics.update(
                {
                    f"few_shot/acc_calibrated_k{r['k']}": r["calibrated"]["mean"]
                    for r in report["results"]
                }
            )
        logger.log_metrics(metrics)
        if isinstance(logger, WandbLogger):
            logger.log_table(key="few_shot/accuracy", columns=columns, data=rows)
            logger.log_image(key="few_shot/plot", images=[str(png)])


def plot(report: dict, path: Path, calibrating: bool) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shots = [r["k"] for r in report["results"]]
    figure, axes = plt.subplots(figsize=(5, 3.4), dpi=100)
    series = [("accuracy", "label words' likelihood")]
    if calibrating:
        series.append(("calibrated", "calibrated"))
    for key, name in series:
        means = [r[key]["mean"] for r in report["results"]]
        stds = [r[key]["std"] for r in report["results"]]
        axes.errorbar(shots, means, yerr=stds, marker="o", capsize=3, label=name)
    axes.axhline(report["majority"], color="grey", linestyle="--", label="majority class")
    axes.set_xlabel("demonstrations k")
    axes.set_ylabel("accuracy")
    axes.set_xticks(shots)
    axes.set_title(
        f"{report['model']}, {report['source']} ({report['examples']} examples)", fontsize=9
    )
    axes.legend(fontsize=8)
    figure.tight_layout()
    with atomic_path(path) as tmp:  # an interrupted run never leaves half a picture
        figure.savefig(tmp, format="png")
    plt.close(figure)
