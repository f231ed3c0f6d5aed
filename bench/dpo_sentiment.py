"""Steer a review GPT toward positive reviews with DPO, checked offline by the suite's own
sentiment classifier (the classic "positive sentiment" experiment of RLHF papers).

1. The review GPT (configs/gpt_reviews.yaml) trains on movie-review text; the SST-2
   classifier (configs/sentiment_lstm_sst2.yaml, 3 epochs) trains as the judge. Both run
   through the CLI as a user runs them, in bench/runs/dpo_sentiment/<stamp>/ (ignored by git).
2. For openings (the first words) of validation review sentences, held out of the GPT's
   training text, the GPT samples `--samples` continuations each; of the pairs among them
   whose lengths differ by at most `--max-word-gap` words, the classifier's P(positive) of
   opening + continuation picks the pair it tells apart most, and its more positive side is
   `chosen`. `--rounds` (3) pairs a training opening, each from new samples.
3. DPO (configs/dpo_reviews.yaml, in this process so that a callback can follow it) tunes
   the GPT on those pairs.
4. On openings of the test sentences (used nowhere in training): the share of continuations
   the classifier judges positive, for the GPT before (SFT) and after DPO, and for best-of-n
   sampling from the SFT model (the non-training baseline); the policy's perplexity on the
   held-out test text (the price paid), and a KL estimate to the SFT model,
   mean log pi(y|x) - log pi_ref(y|x) over samples y of the policy. Positive share and KL are
   also followed across DPO training.

Prints a table, writes bench/results/dpo_sentiment.json and dpo_sentiment.png.

    python bench/dpo_sentiment.py                      # everything, about 5 minutes on a CPU core
    python bench/dpo_sentiment.py --gpt-ckpt A --classifier-ckpt B   # reuse the two runs
    python bench/dpo_sentiment.py --quick              # tiny sizes: the plumbing only
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import math
import os
import time
from pathlib import Path

import lightning as L
import torch
import yaml
from common import ROOT, cli, machine_info, results_file, write_report

from datamodules.preference import EncodedPair, collate_pairs, encode_side
from datamodules.reviews import ReviewsDataModule
from datamodules.sentiment import SST2DataModule
from lit_models.dpo import DPO
from lit_models.gpt import GPT
from lit_models.language_model import next_token_nll
from lit_models.modules.decoding import generate
from lit_models.text_classifier import TextClassifier

RUNS = ROOT / "bench" / "runs" / "dpo_sentiment"
TARGET_POSITIVE, TARGET_PPL_RISE = 0.80, 0.20
OPENING_WORDS = 4  # an opening: the first words of a held-out review sentence
MAX_NEW_TOKENS = 20


# --- the two models the experiment starts from, trained through the CLI ----------------------
def fit(config: str, folder: Path, env: dict, overrides: list[str], pattern: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    args = ["fit", "--config", str(ROOT / "configs" / config), *overrides]
    args += ["--trainer.enable_progress_bar=false", "--trainer.logger=CSVLogger"]
    cli([*args, "--trainer.logger.save_dir=csv"], folder, env)
    return max(folder.rglob(pattern), key=lambda p: p.stat().st_mtime)


class Judge:
    """The SST-2 classifier: P(positive) of texts."""

    def __init__(self, ckpt: Path, data_dir: Path):
        self.data = SST2DataModule(data_dir=str(data_dir / "sst2"))
        self.model = TextClassifier.load_from_checkpoint(ckpt, map_location="cpu").eval()

    @torch.no_grad()
    def positive(self, texts: list[str]) -> torch.Tensor:
        ids = [self.data.encode(t) for t in texts]
        lengths = torch.tensor([len(i) for i in ids])
        batch = torch.zeros(len(ids), int(lengths.max()), dtype=torch.long)
        for row, row_ids in enumerate(ids):
            batch[row, : len(row_ids)] = torch.tensor(row_ids)
        return self.model(batch, lengths).softmax(-1)[:, 1]


# --- sampling and scoring ---------------------------------------------------------------------
def openings(sentences: list[str], n: int) -> list[str]:
    long_enough = [s for s in sentences if len(s.split()) >= OPENING_WORDS + 4]
    return [" ".join(s.split()[:OPENING_WORDS]) for s in long_enough[:n]]


def newline_id(data: ReviewsDataModule) -> int | None:
    """The token that ends a review line, where it is one token."""
    ids = data.tokenizer.encode("\n")
    return ids[0] if len(ids) == 1 else None


def sample(model, data: ReviewsDataModule, prompts: list[str], seed: int) -> list[list[int]]:
    """One continuation a prompt, as token ids: to the end of its line (the newline kept) or
    MAX_NEW_TOKENS."""
    eos = newline_id(data)
    rows = generate(
        model,
        [data.encode(p) for p in prompts],
        max_new_tokens=MAX_NEW_TOKENS,
        strategy="sample",
        eos_id=eos,
        seed=seed,
    )
    return [row + [eos] if eos is not None and len(row) < MAX_NEW_TOKENS else row for row in rows]


def judged(judge: Judge, data, prompts: list[str], responses: list[list[int]]) -> torch.Tensor:
    """P(positive) of each opening + continuation."""
    texts = [p + data.decode(r) for p, r in zip(prompts, responses, strict=True)]
    return judge.positive([t.strip() for t in texts])


def kl_estimate(model: DPO, data, prompts: list[str], responses: list[list[int]]) -> float:
    """mean over samples y ~ pi of log pi(y|x) - log pi_ref(y|x), in nats a continuation (the
    sampled ids themselves: decoding and encoding again may cut the text otherwise)."""
    pairs = []
    for prompt, response in zip(prompts, responses, strict=True):
        side = encode_side(data.encode(prompt), response, block_size=10_000)
        pairs.append(EncodedPair(side, side))
    batch = collate_pairs(pairs)
    ids, targets = batch["chosen_input_ids"], batch["chosen_targets"]
    with torch.no_grad(), model.decoding_mode():
        policy = model.sequence_logprobs(ids, targets)
        reference = model.sequence_logprobs(ids, targets, reference=True)
    return (policy - reference).mean().item()


@torch.no_grad()
def heldout_perplexity(forward, data: ReviewsDataModule) -> float:
    """exp(mean NLL) of every token of the held-out test text (one ordered pass)."""
    total, count = 0.0, 0
    for batch in data.test_dataloader():
        nll = next_token_nll(forward(batch["input_ids"]), batch["targets"])
        mask = batch["targets"] != -100
        total, count = total + nll[mask].sum().item(), count + int(mask.sum())
    return math.exp(total / count)


def positive_share(model, data, judge, prompts, seeds) -> tuple[float, list[list[int]]]:
    """Share of continuations judged positive (P > 0.5), over prompts x seeds; and them."""
    responses = [r for seed in seeds for r in sample(model, data, prompts, seed)]
    probs = judged(judge, data, prompts * len(seeds), responses)
    return (probs > 0.5).float().mean().item(), responses


def best_of_n(model, data, judge, prompts, n: int, seed: int) -> float:
    """Best-of-n: n samples a prompt, the classifier keeps the most positive."""
    probs = [judged(judge, data, prompts, sample(model, data, prompts, seed + k)) for k in range(n)]
    return (torch.stack(probs).max(dim=0).values > 0.5).float().mean().item()


# --- the pairs --------------------------------------------------------------------------------
def build_pairs(
    gpt, data, judge, prompts: list[str], seed: int, samples: int, max_word_gap: int | None
) -> tuple[list[dict], float]:
    """`samples` continuations an opening; of the pairs among them whose lengths differ by at
    most `max_word_gap` words (None: any), the one the classifier tells apart most, its more
    positive continuation chosen. Lengths are matched because the judge finds less to call
    negative in a shorter text: unmatched, DPO learns to stop early more than to be positive.
    Also returns the mean gap in P(positive) between chosen and rejected."""
    drawn = [sample(gpt, data, prompts, seed + k) for k in range(samples)]
    probs = [judged(judge, data, prompts, responses).tolist() for responses in drawn]
    rows, gaps = [], []
    for i, prompt in enumerate(prompts):
        texts = [data.decode(responses[i]) for responses in drawn]
        q = [p[i] for p in probs]
        words = [len(t.split()) for t in texts]
        candidates = [
            (abs(q[a] - q[b]), a, b)
            for a, b in itertools.combinations(range(samples), 2)
            if texts[a].strip()
            and texts[b].strip()
            and texts[a] != texts[b]  # one to prefer
            and (max_word_gap is None or abs(words[a] - words[b]) <= max_word_gap)
        ]
        if not candidates:
            continue
        gap, a, b = max(candidates)
        chosen, rejected = (a, b) if q[a] >= q[b] else (b, a)
        rows.append({"prompt": prompt, "chosen": texts[chosen], "rejected": texts[rejected]})
        gaps.append(gap)
    return rows, sum(gaps) / max(1, len(gaps))


class Tracker(L.Callback):
    """Positive share and KL estimate of the policy every `every` steps of DPO."""

    def __init__(self, data, judge, prompts, every: int, seed: int):
        self.data, self.judge, self.prompts, self.every, self.seed = (
            data,
            judge,
            prompts,
            every,
            seed,
        )
        self.history: list[dict] = []

    def measure(self, model: DPO, step: int) -> None:
        share, responses = positive_share(model, self.data, self.judge, self.prompts, [self.seed])
        kl = kl_estimate(model, self.data, self.prompts, responses)
        self.history.append({"step": step, "positive_share": share, "kl": kl})
        print(f"  DPO step {step}: positive {share:.1%}, KL {kl:.3f}", flush=True)

    def on_train_start(self, trainer, model) -> None:
        self.measure(model, 0)

    def on_train_batch_end(self, trainer, model, outputs, batch, batch_idx) -> None:
        if trainer.global_step % self.every == 0:
            self.measure(model, trainer.global_step)


def run_dpo(config: dict, base: Path, folder: Path, tokenizer_file: Path, tracker, max_steps):
    model_args = {**config["model"]["init_args"], "base": str(base)}
    data_args = {
        **config["data"]["init_args"],
        "train_file": str(folder / "pairs-train.jsonl"),
        "val_file": str(folder / "pairs-val.jsonl"),
        "tokenizer_file": str(tokenizer_file),
    }
    from datamodules.preference import PreferenceDataModule

    data = PreferenceDataModule(**data_args)
    model = DPO(**model_args, vocab_size=data.vocab_size, block_size=data.block_size)
    t = config["trainer"]
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=max_steps or t["max_steps"],
        val_check_interval=t["val_check_interval"],
        check_val_every_n_epoch=None,
        gradient_clip_val=t["gradient_clip_val"],
        log_every_n_steps=t["log_every_n_steps"],
        logger=L.pytorch.loggers.CSVLogger(folder / "dpo_csv"),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[tracker],
    )
    start = time.perf_counter()
    trainer.fit(model, data)
    seconds = time.perf_counter() - start
    val = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
    return model.eval(), val, seconds, model_args


def plot(history: list[dict], sft: float, best: float, n: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [h["step"] for h in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(8, 3.2), dpi=90)
    ax1.plot(steps, [100 * h["positive_share"] for h in history], marker="o", label="DPO policy")
    ax1.axhline(100 * sft, color="gray", ls="--", label="SFT model")
    ax1.axhline(100 * best, color="green", ls=":", label=f"best-of-{n} (SFT)")
    ax1.axhline(100 * TARGET_POSITIVE, color="red", lw=0.8, label="target")
    ax1.set(xlabel="DPO step", ylabel="positive continuations (%)", title="positive share")
    ax1.legend(fontsize=7)
    ax2.plot(steps, [h["kl"] for h in history], marker="o", color="purple")
    ax2.axhline(math.log(n) - (n - 1) / n, color="green", ls=":", label=f"best-of-{n} bound")
    ax2.set(xlabel="DPO step", ylabel="nats per continuation", title="KL(policy || SFT) estimate")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpt-ckpt", type=Path, help="reuse a review GPT run's checkpoint")
    parser.add_argument("--classifier-ckpt", type=Path, help="reuse an SST-2 classifier's")
    parser.add_argument("--gpt-steps", type=int, help="default: configs/gpt_reviews.yaml's")
    # 3 epochs of the SST-2 train split: a judge of about 78% on held-out sentences (500 steps,
    # 71%, judged the same continuations far less positive than it does).
    parser.add_argument("--classifier-steps", type=int, default=2454)
    parser.add_argument("--train-prompts", type=int, default=480)
    parser.add_argument("--eval-prompts", type=int, default=400)
    parser.add_argument(
        "--dpo-config",
        type=Path,
        default=ROOT / "configs" / "dpo_reviews.yaml",
        help="DPO's recipe",
    )
    parser.add_argument("--dpo-steps", type=int, help="default: the DPO config's")
    parser.add_argument(
        "--rounds", type=int, default=3, help="pairs a training opening (new samples each)"
    )
    # Eight samples an opening, the pair of lengths within a word the judge tells apart most:
    # with two samples and any lengths, DPO learnt to stop early (+73% held-out perplexity).
    parser.add_argument("--samples", type=int, default=8, help="continuations drawn an opening")
    parser.add_argument(
        "--max-word-gap",
        type=int,
        default=1,
        help="most words a pair's sides may differ by (a large number: any)",
    )
    parser.add_argument("--every", type=int, default=25, help="DPO steps between measurements")
    parser.add_argument("--best-of", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: the plumbing only")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.quick:
        args.gpt_steps, args.classifier_steps = args.gpt_steps or 20, 20
        args.train_prompts, args.eval_prompts, args.dpo_steps, args.every = 24, 16, 6, 3
    torch.set_num_threads(args.threads)
    out = results_file(args.out, "dpo_sentiment", args.quick)
    data_dir = Path(os.environ.get("DATA_DIR", ROOT.parent / "shared" / "data")).resolve()
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "DATA_DIR": str(data_dir)}
    env.setdefault("WANDB_MODE", "offline")
    folder = RUNS / f"{datetime.datetime.now():%Y%m%d-%H%M%S}-{os.getpid()}"  # runs side by side
    folder.mkdir(parents=True)
    seconds = {}
    started = time.perf_counter()

    # 1. the review GPT and the judge
    gpt_ckpt = args.gpt_ckpt
    if gpt_ckpt is None:
        steps = []
        if args.gpt_steps:  # one evaluation (and checkpoint) at the end
            steps = [f"--trainer.max_steps={n}" for n in [args.gpt_steps]]
            steps.append(f"--trainer.val_check_interval={args.gpt_steps}")
        t = time.perf_counter()
        gpt_ckpt = fit("gpt_reviews.yaml", folder / "gpt", env, steps, "checkpoints/last.ckpt")
        seconds["gpt_fit"] = round(time.perf_counter() - t, 1)
    judge_ckpt = args.classifier_ckpt
    if judge_ckpt is None:
        steps = [
            f"--trainer.max_steps={args.classifier_steps}",
            f"--trainer.val_check_interval={args.classifier_steps}",
            "--trainer.check_val_every_n_epoch=null",  # the interval counts across epochs
        ]
        t = time.perf_counter()
        judge_ckpt = fit(
            "sentiment_lstm_sst2.yaml", folder / "judge", env, steps, "checkpoints/best-*.ckpt"
        )
        seconds["classifier_fit"] = round(time.perf_counter() - t, 1)
    L.seed_everything(1337)
    gpt_config = yaml.safe_load((ROOT / "configs" / "gpt_reviews.yaml").read_text())
    data = ReviewsDataModule(data_dir=str(data_dir), **gpt_config["data"]["init_args"])
    data.prepare_data()
    data.setup("test")
    gpt = GPT.load_from_checkpoint(gpt_ckpt, map_location="cpu").eval()
    judge = Judge(judge_ckpt, data_dir)
    judge_acc = torch.load(judge_ckpt, map_location="cpu", weights_only=True)
    judge_val_acc = next(
        float(v["best_model_score"])
        for k, v in judge_acc["callbacks"].items()
        if k.startswith("ModelCheckpoint{'monitor': 'val/acc'")
    )

    # 2. pairs on validation openings; evaluation on test openings
    n_val_pairs = max(8, args.train_prompts // 10)
    val_openings = openings(data.held_out_sentences("val"), args.train_prompts + n_val_pairs)
    eval_prompts = openings(data.held_out_sentences("test"), args.eval_prompts)
    t = time.perf_counter()
    # Validation pairs from openings of their own; each training opening gives `rounds` pairs.
    drawing = {"samples": args.samples, "max_word_gap": args.max_word_gap}
    val_rows, _ = build_pairs(gpt, data, judge, val_openings[:n_val_pairs], seed=1, **drawing)
    train_rows, gaps = [], []
    for round_ in range(args.rounds):
        seed = 1 + args.samples * round_  # new samples each round
        part, gap = build_pairs(gpt, data, judge, val_openings[n_val_pairs:], seed, **drawing)
        train_rows, gaps = train_rows + part, gaps + [gap]
    gap = sum(gaps) / len(gaps)
    for name, part in (("train", train_rows), ("val", val_rows)):
        (folder / f"pairs-{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part))
    seconds["pairs"] = round(time.perf_counter() - t, 1)

    # 4a. before: the SFT model and best-of-n
    seeds = [101, 102]
    t = time.perf_counter()
    sft_share, _ = positive_share(gpt, data, judge, eval_prompts, seeds)
    best_share = best_of_n(gpt, data, judge, eval_prompts, args.best_of, seed=201)
    sft_ppl = heldout_perplexity(gpt, data)
    seconds["evaluate_sft"] = round(time.perf_counter() - t, 1)

    # 3. DPO, followed by the tracker
    dpo_config = yaml.safe_load(args.dpo_config.read_text())
    tracker = Tracker(data, judge, eval_prompts, args.every, seed=301)
    policy, val, seconds["dpo_fit"], model_args = run_dpo(
        dpo_config, gpt_ckpt, folder, data.tokenizer_path, tracker, args.dpo_steps
    )
    seconds["dpo_fit"] = round(seconds["dpo_fit"], 1)

    # 4b. after
    dpo_share, responses = positive_share(policy, data, judge, eval_prompts, seeds)
    kl = kl_estimate(policy, data, eval_prompts * len(seeds), responses)
    dpo_ppl = heldout_perplexity(policy, data)
    seconds["total"] = round(time.perf_counter() - started, 1)

    n = args.best_of
    table = [
        {
            "model": "SFT (review GPT)",
            "positive_share": sft_share,
            "heldout_ppl": sft_ppl,
            "kl": 0.0,
        },
        {
            "model": f"best-of-{n} from SFT",
            "positive_share": best_share,
            "heldout_ppl": sft_ppl,
            "kl": math.log(n) - (n - 1) / n,  # the known bound for best-of-n
        },
        {"model": "DPO policy", "positive_share": dpo_share, "heldout_ppl": dpo_ppl, "kl": kl},
    ]
    print(f"\n{'model':<22} {'positive':>9} {'held-out ppl':>13} {'KL (nats)':>10}")
    for row in table:
        print(
            f"{row['model']:<22} {row['positive_share']:>9.1%} {row['heldout_ppl']:>13.2f} {row['kl']:>10.3f}"
        )
    rise = dpo_ppl / sft_ppl - 1
    print(f"held-out perplexity {rise:+.1%}; seconds: {seconds}")
    png = out.with_suffix(".png")
    plot(tracker.history, sft_share, best_share, n, png)
    write_report(
        out,
        machine=machine_info(),
        table=table,
        targets={
            "positive_share": TARGET_POSITIVE,
            "max_ppl_rise": TARGET_PPL_RISE,
            "meets_positive": dpo_share >= TARGET_POSITIVE,
            "meets_ppl": rise <= TARGET_PPL_RISE,
        },
        heldout_ppl_rise=rise,
        history=tracker.history,
        pairs={
            "train": len(train_rows),
            "val": len(val_rows),
            "rounds": args.rounds,
            **drawing,
            "mean_p_positive_gap": gap,
        },
        dpo=model_args | {"val_metrics": val},
        judge={
            "checkpoint": str(judge_ckpt.relative_to(ROOT))
            if judge_ckpt.is_relative_to(ROOT)
            else str(judge_ckpt),
            "val_acc": judge_val_acc,
        },
        gpt={
            "checkpoint": str(gpt_ckpt.relative_to(ROOT))
            if gpt_ckpt.is_relative_to(ROOT)
            else str(gpt_ckpt)
        },
        eval_prompts=len(eval_prompts),
        samples_per_prompt=len(seeds),
        example_prompts=eval_prompts[:3],
        example_dpo_continuations=[data.decode(r) for r in responses[:3]],
        seconds=seconds,
        plot=str(png.relative_to(ROOT)) if png.is_relative_to(ROOT) else str(png),
    )


if __name__ == "__main__":
    main()
