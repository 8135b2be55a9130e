"""Build the toy policy: tokenizer + random model, then a short supervised warm start.

``build(path)`` runs the whole recipe deterministically (fixed seeds, 2 threads):
1. puzzles of the train split -> tokenizer corpus (the user texts and worked solutions,
   plus the method's rethinking triggers) -> byte-level BPE;
2. a random ``Qwen2_5_VLForConditionalGeneration`` of the tiny shape;
3. supervised fine-tuning on worked solutions: prompts built exactly as the trainer
   builds them (``rethinker.prompt.build_messages`` + the processor's chat template), the
   assistant turn = worked solution + ``<|im_end|>``, cross-entropy on the assistant
   tokens only. Stopped after a fixed number of steps (``stop_after`` of a ``steps``-long
   schedule) chosen so that greedy accuracy on the held-out split is above chance and far
   from perfect: some kinds learned, some half-learned, some not yet (RL headroom).
"""

from __future__ import annotations

import math
import random
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from ..prompt import build_messages, question_text
from ..records import Record, load_image
from .model import PACKAGE_POLICY_DIR, build_model, build_processor, build_tokenizer, save_toy
from .puzzles import CONFIRM_TRIGGERS, FIX_TRIGGER, KINDS, WARM_START_KINDS, generate, make_record, solution_of

#: Rethinking triggers of the method, so that they tokenize compactly.
TRIGGERS = (
    "\n\nWait",
    "\n\nWait, does it seem right?",
    "\n\nWait, let's double check",
    "\n\nWait, there might be a mistake",
    *CONFIRM_TRIGGERS,
    FIX_TRIGGER,
)


@dataclass
class WarmStartConfig:
    """The recipe. Defaults are the shipped build's."""

    seed: int = 0
    threads: int = 2
    corpus_size: int = 4000  # train puzzles the tokenizer is trained on
    steps: int = 600  # length of the learning-rate schedule (warm-up + cosine)
    stop_after: int | None = 500  # stop early (at the edge of ability); None -> run all steps
    batch_size: int = 32
    lr: float = 1e-3
    warmup: int = 30
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    eval_n: int = 550  # held-out puzzles (dev split: the stopping point is chosen there) for the report
    eval_every: int = 0  # 0: evaluate only at the end
    max_new_tokens: int = 48
    kinds: Sequence[str] | None = WARM_START_KINDS
    # share of the teacher's worked solutions that carry its systematic error where it has
    # one (``puzzles.teacher_answer``): the warm start imitates an imperfect teacher and RL
    # against the verifiable reward has that to correct, besides what is half-learned
    teacher_error_rate: float = 0.6
    #: kinds on which the teacher never errs, and the share of supervised batches per kind
    #: (relative weights; kinds not named weigh 1): together they make a warm start that is
    #: near saturation on some kinds and half-learned on others, as a strong base model is
    teacher_exact_kinds: Sequence[str] = ()
    kind_weights: dict = field(default_factory=dict)
    text_overrides: dict = field(default_factory=dict)


def tokenizer_corpus(records: Iterable[Record]) -> list[str]:
    """Texts the BPE is trained on: each record's user text and worked solution, plus the
    chat template's fixed parts (system turn, role names) and the rethinking triggers,
    repeated so that they merge into whole-word tokens."""
    fixed = ["system\nYou are a helpful assistant.", "user\n", "assistant\n", *TRIGGERS]
    texts = fixed * 50
    for r in records:
        texts.append(question_text(r))
        texts.append(solution_of(r))
    return texts


def build_untrained(seed: int = 0, corpus_size: int = 4000, **text_overrides):
    """Tokenizer, processor and random-init model (no training): ``(model, processor)``."""
    records = generate(corpus_size, seed=seed, split="train")
    tokenizer = build_tokenizer(tokenizer_corpus(records))
    processor = build_processor(tokenizer)
    model = build_model(tokenizer, seed=seed, **text_overrides)
    return model, processor


# -- batches ---------------------------------------------------------------------------
def sft_batch(processor, records: Sequence[Record], completions: Sequence[str] | None = None) -> dict:
    """Right-padded prompt + completion batch with ``labels`` = -100 outside the completion.

    The prompt is the chat template of ``build_messages(record)`` with the generation
    prompt; the completion (default: the worked solution) is followed by ``<|im_end|>``,
    the assistant turn's end, so the model learns to stop."""
    tok = processor.tokenizer
    completions = list(completions) if completions is not None else [solution_of(r) for r in records]
    prompts = [
        processor.apply_chat_template(build_messages(r), add_generation_prompt=True, tokenize=False) for r in records
    ]
    images = [load_image(im, record_id=r.id) for r in records for im in r.images]
    enc = processor(text=prompts, images=images or None, return_tensors="pt", padding=True, padding_side="right")
    comp_ids = [tok(c + tok.eos_token, add_special_tokens=False)["input_ids"] for c in completions]
    p_len = enc["attention_mask"].sum(1).tolist()
    total = max(pl + len(c) for pl, c in zip(p_len, comp_ids))
    bsz = len(records)
    input_ids = torch.full((bsz, total), tok.pad_token_id, dtype=torch.long)
    attention = torch.zeros((bsz, total), dtype=torch.long)
    mm_types = torch.zeros((bsz, total), dtype=enc["mm_token_type_ids"].dtype)
    labels = torch.full((bsz, total), -100, dtype=torch.long)
    for i, (pl, c) in enumerate(zip(p_len, comp_ids)):
        input_ids[i, :pl] = enc["input_ids"][i, :pl]
        mm_types[i, :pl] = enc["mm_token_type_ids"][i, :pl]
        input_ids[i, pl : pl + len(c)] = torch.tensor(c)
        labels[i, pl : pl + len(c)] = torch.tensor(c)
        attention[i, : pl + len(c)] = 1
    batch = {"input_ids": input_ids, "attention_mask": attention, "mm_token_type_ids": mm_types, "labels": labels}
    if "pixel_values" in enc:
        batch["pixel_values"] = enc["pixel_values"]
        batch["image_grid_thw"] = enc["image_grid_thw"]
    return batch


def sft_loss(model, batch: dict):
    """Mean next-token cross-entropy over completion tokens."""
    labels = batch["labels"]
    kwargs = {k: v for k, v in batch.items() if k != "labels"}
    logits = model(**kwargs).logits[:, :-1]
    target = labels[:, 1:]
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), target.reshape(-1), ignore_index=-100)


# -- evaluation ------------------------------------------------------------------------
def boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (balanced braces), or None."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    i, depth = start + len("\\boxed{"), 1
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i:j]
    return None


def exact_check(response: str, record: Record) -> bool:
    """The toy world's answers are single words, numbers or letters: compare the last box
    to the ground truth, case- and space-insensitively."""
    got = boxed(response)
    return got is not None and got.strip().lower() == record.answer.strip().lower()


def _judge() -> Callable[[str, Record], bool]:
    try:  # the project's judge, when present
        from ..judge import is_correct  # type: ignore[attr-defined]

        return lambda response, record: bool(
            is_correct(response, record.answer, record.choices, record.answer_type, record.precision)
        )
    except Exception:
        return exact_check


def greedy_responses(
    model, processor, records: Sequence[Record], max_new_tokens: int = 48, batch_size: int = 64
) -> list[str]:
    """Greedy completions (left-padded batches, ``torch.no_grad``)."""
    out: list[str] = []
    for s in range(0, len(records), batch_size):
        chunk = records[s : s + batch_size]
        prompts = [
            processor.apply_chat_template(build_messages(r), add_generation_prompt=True, tokenize=False) for r in chunk
        ]
        images = [load_image(im, record_id=r.id) for r in chunk for im in r.images]
        enc = processor(text=prompts, images=images or None, return_tensors="pt", padding=True, padding_side="left")
        with torch.no_grad():
            gen = model.generate(
                **enc, max_new_tokens=max_new_tokens, do_sample=False, top_k=None, top_p=None, temperature=None
            )
        out += processor.batch_decode(gen[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    return out


@dataclass
class Accuracy:
    """Greedy accuracy overall and per kind, with 95% Wilson intervals."""

    correct: int
    n: int
    per_kind: dict[str, tuple[int, int]]
    boxed_rate: float
    reflection_rate: float

    @property
    def value(self) -> float:
        return self.correct / max(self.n, 1)

    def table(self) -> str:
        rows = [f"{'kind':<13} {'n':>4} {'acc':>6}  95% CI"]
        for kind, (c, n) in sorted(self.per_kind.items()):
            lo, hi = wilson(c, n)
            rows.append(f"{kind:<13} {n:>4} {c / n:6.3f}  [{lo:.3f}, {hi:.3f}]")
        lo, hi = wilson(self.correct, self.n)
        rows.append(f"{'all':<13} {self.n:>4} {self.value:6.3f}  [{lo:.3f}, {hi:.3f}]")
        rows.append(f"boxed answers {self.boxed_rate:.3f}, reflection rate {self.reflection_rate:.3f}")
        return "\n".join(rows)


def wilson(c: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval for c successes out of n."""
    if n == 0:
        return 0.0, 1.0
    p = c / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, mid - half), min(1.0, mid + half)


def evaluate(model, processor, records: Sequence[Record], max_new_tokens: int = 48) -> Accuracy:
    """Greedy accuracy of ``model`` on ``records`` (the project's judge if present, else
    the exact boxed-answer check)."""
    judge = _judge()
    responses = greedy_responses(model, processor, records, max_new_tokens)
    per: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    correct = 0
    for r, resp in zip(records, responses):
        ok = judge(resp, r)
        correct += ok
        per[r.category or "?"][0] += ok
        per[r.category or "?"][1] += 1
    boxed_rate = sum(boxed(x) is not None for x in responses) / max(len(responses), 1)
    reflect = sum("wait" in x.lower() for x in responses) / max(len(responses), 1)
    return Accuracy(correct, len(records), {k: (v[0], v[1]) for k, v in per.items()}, boxed_rate, reflect)


# -- training --------------------------------------------------------------------------
def warm_start(
    model,
    processor,
    cfg: WarmStartConfig,
    log: Callable[[str], None] = print,
    eval_records: Sequence[Record] | None = None,
    on_eval: Callable[[int, object], None] | None = None,
) -> list[dict]:
    """Supervised steps on freshly generated train puzzles (a new batch each step, so no
    puzzle is seen twice); AdamW, linear warm-up then cosine decay, grad clipping.
    Returns the log rows (step, loss, and eval accuracy where evaluated)."""
    torch.manual_seed(cfg.seed)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.98))

    def lr_at(step: int) -> float:
        if step < cfg.warmup:
            return cfg.lr * (step + 1) / cfg.warmup
        prog = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
        return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * prog)))

    rows: list[dict] = []
    t0 = time.time()
    kinds = list(cfg.kinds) if cfg.kinds else list(KINDS)
    for step in range(min(cfg.steps, cfg.stop_after or cfg.steps)):
        records = generate_batch(cfg.seed, step, cfg.batch_size, kinds, cfg.kind_weights)
        batch = sft_batch(
            processor,
            records,
            teacher_solutions(records, cfg.teacher_error_rate, cfg.seed, step, cfg.teacher_exact_kinds),
        )
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        loss = sft_loss(model, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        row = {"step": step + 1, "loss": loss.item(), "time_s": time.time() - t0}
        if cfg.eval_every and eval_records is not None and (step + 1) % cfg.eval_every == 0:
            model.eval()
            acc = evaluate(model, processor, eval_records, cfg.max_new_tokens)
            if on_eval is not None:
                on_eval(step + 1, model)
            model.train()
            row["eval_accuracy"] = acc.value
            row["per_kind"] = {k: c / n for k, (c, n) in acc.per_kind.items()}
            log(
                f"step {step + 1}: loss {loss.item():.3f}  eval {acc.value:.3f}  "
                + " ".join(f"{k}={c / n:.2f}" for k, (c, n) in sorted(acc.per_kind.items()))
                + f"  ({time.time() - t0:.0f}s)"
            )
        elif (step + 1) % 50 == 0:
            log(f"step {step + 1}: loss {loss.item():.3f} ({time.time() - t0:.0f}s)")
        rows.append(row)
    model.eval()
    return rows


def teacher_solutions(
    records: Sequence[Record], error_rate: float, seed: int, step: int, exact_kinds: Sequence[str] = ()
) -> list[str]:
    """The worked solutions the warm start imitates: the correct one, or with probability
    ``error_rate`` the teacher's wrong one where it has one and the kind is not one of
    ``exact_kinds`` (deterministic per step)."""
    rng = random.Random(f"teacher:{seed}:{step}")
    out = []
    for r in records:
        wrong = r.meta.get("teacher_solution") if r.category not in exact_kinds else None
        out.append(wrong if wrong is not None and rng.random() < error_rate else solution_of(r))
    return out


def generate_batch(
    seed: int, step: int, batch_size: int, kinds: Sequence[str], weights: dict | None = None
) -> list[Record]:
    """The ``step``-th supervised batch: train-split puzzles with kinds drawn at random,
    in proportion to ``weights`` (default 1 each); a different item stream from the
    tokenizer corpus and from the RL data."""
    rng = random.Random(f"warmstart:{seed}:{step}")
    base = 10_000_000 + step * batch_size
    if weights:
        drawn = rng.choices(list(kinds), weights=[float(weights.get(k, 1.0)) for k in kinds], k=batch_size)
    else:
        drawn = [rng.choice(kinds) for _ in range(batch_size)]
    return [make_record(k, seed + 1, "train", base + i) for i, k in enumerate(drawn)]


def build(
    path: str | Path | None = None, cfg: WarmStartConfig | None = None, log: Callable[[str], None] = print
) -> tuple[Path, Accuracy]:
    """Rebuild the toy policy (tokenizer, model, warm start) and save it to ``path``
    (default: the packaged ``assets/policy``). Returns the path and its held-out accuracy."""
    cfg = cfg or WarmStartConfig()
    torch.set_num_threads(cfg.threads)
    t0 = time.time()
    model, processor = build_untrained(cfg.seed, cfg.corpus_size, **cfg.text_overrides)
    log(
        f"tokenizer ({len(processor.tokenizer)} tokens) and model "
        f"({sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters) built in {time.time() - t0:.1f}s"
    )
    eval_records = generate(cfg.eval_n, seed=cfg.seed, split="dev", kinds=cfg.kinds)
    warm_start(model, processor, cfg, log, eval_records)
    acc = evaluate(model, processor, eval_records, cfg.max_new_tokens)
    log(acc.table())
    out = save_toy(model, processor, path or PACKAGE_POLICY_DIR)
    log(f"saved to {out} in {time.time() - t0:.0f}s total")
    return out, acc
