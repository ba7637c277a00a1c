"""Shared helpers for the training recipe: paths, data, tokenisation, batching, metrics, train loop.

Nothing here writes any tweet text anywhere; only label ids, scores and weights leave the process.
"""
from __future__ import annotations

import json
import math
import os
import platform
import random
import time
from pathlib import Path
from typing import Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import torch
from tqdm import tqdm

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "models"
BACKBONE_REL = "backbones/all-MiniLM-L6-v2"
BACKBONE = MODELS / BACKBONE_REL
BACKBONE_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"
RUNS = REPO / "python" / "train" / "runs"

TASKS = ["sentiment", "emotion", "offensive", "irony", "hate"]  # fusion order, fixed
FUSION_NAME = ",".join(TASKS)  # what AdapterHub calls Fuse(*TASKS)
TARGETS = {"hate-fusion": "hate", "irony-fusion": "irony"}
SEED = 42
# Training examples are truncated at 128 tokens (speed); validation is scored untruncated
# (512 = the backbone's limit), exactly as the server and reference.py see it.
EVAL_MAX_LEN = 512


def setup(threads: int = 2, seed: int = SEED) -> None:
    torch.set_num_threads(threads)
    set_seed(seed)


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# ----------------------------------------------------------------------------------------- data
TASK_FILES = ["mapping.txt", "train_text.txt", "train_labels.txt", "val_text.txt", "val_labels.txt"]


def data_argument(ap) -> None:
    """--data: the TweetEval folder (<task>/{train,val}_{text,labels}.txt, <task>/mapping.txt).
    The data is never part of the repository, so there is no default beyond $TWEETEVAL_DIR."""
    env = os.environ.get("TWEETEVAL_DIR")
    ap.add_argument("--data", type=Path, default=Path(env) if env else None,
                    help="TweetEval folder holding <task>/{train,val}_{text,labels}.txt and <task>/mapping.txt "
                         "(default: $TWEETEVAL_DIR)")


def require_data(data_dir: Path | None, tasks: list[str] = TASKS) -> None:
    if data_dir is None:
        raise SystemExit("TweetEval is needed: pass --data DIR or set TWEETEVAL_DIR")
    missing = [f"{t}/{f}" for t in tasks for f in TASK_FILES if not (Path(data_dir) / t / f).is_file()]
    if missing:
        raise SystemExit(f"{data_dir} is not a TweetEval folder: missing {', '.join(missing[:5])}"
                         + (f" and {len(missing) - 5} more" if len(missing) > 5 else ""))


def read_lines(path: Path) -> list[str]:
    """One record per '\n'-separated line (no other line breaks are split on, nothing stripped)."""
    parts = Path(path).read_text(encoding="utf-8").split("\n")
    if parts and parts[-1] == "":
        parts.pop()
    return parts


def read_id2label(data_dir: Path, task: str) -> dict[int, str]:
    out = {}
    for line in read_lines(Path(data_dir) / task / "mapping.txt"):
        if line.strip():
            i, name = line.split("\t")
            out[int(i)] = name.strip()
    assert sorted(out) == list(range(len(out))), f"{task}: mapping ids not 0..n-1"
    return out


def load_split(data_dir: Path, task: str, split: str) -> tuple[list[str], list[int]]:
    texts = read_lines(Path(data_dir) / task / f"{split}_text.txt")
    labels = [int(x) for x in read_lines(Path(data_dir) / task / f"{split}_labels.txt")]
    assert len(texts) == len(labels), f"{task}/{split}: {len(texts)} texts vs {len(labels)} labels"
    return texts, labels


def subsample(texts, labels, n: int | None, seed: int = SEED):
    """Random subset of n training examples (fixed seed), or everything when n is None/too large."""
    if n is None or n >= len(texts):
        return texts, labels, None
    idx = np.random.RandomState(seed).permutation(len(texts))[:n]
    idx.sort()
    return [texts[i] for i in idx], [labels[i] for i in idx], idx.tolist()


# ------------------------------------------------------------------------------------ tokenising
def load_tokenizer():
    from transformers import BertTokenizerFast

    # BertTokenizerFast reads tokenizer.json; truncation/padding baked into that file are
    # overridden per call below ([CLS] text [SEP], token_type_ids all 0).
    return BertTokenizerFast.from_pretrained(str(BACKBONE))


def encode(tok, texts: list[str], max_length: int) -> list[list[int]]:
    enc = tok(texts, add_special_tokens=True, truncation=True, max_length=max_length, padding=False)
    return enc["input_ids"]


def collate(seqs: list[list[int]]) -> dict[str, torch.Tensor]:
    n, width = len(seqs), max(len(s) for s in seqs)
    ids = torch.zeros((n, width), dtype=torch.long)
    mask = torch.zeros((n, width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, : len(s)] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}


def train_batches(lengths: list[int], batch_size: int, rng: np.random.RandomState, bucket: int = 50):
    """Shuffle, then sort by length inside chunks of `bucket` batches (less padding), shuffle batches."""
    perm = rng.permutation(len(lengths))
    chunk = batch_size * bucket
    batches = []
    for c in range(0, len(perm), chunk):
        part = sorted(perm[c : c + chunk], key=lambda i: lengths[i])
        batches += [part[b : b + batch_size] for b in range(0, len(part), batch_size)]
    order = rng.permutation(len(batches))
    return [batches[i] for i in order]


def eval_batches(lengths: list[int], batch_size: int):
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [order[b : b + batch_size] for b in range(0, len(order), batch_size)]


@torch.inference_mode()
def predict_logits(model, ids: list[list[int]], batch_size: int = 128, desc: str = "eval") -> np.ndarray:
    model.eval()
    out = [None] * len(ids)
    for batch in tqdm(eval_batches([len(s) for s in ids], batch_size), desc=desc, leave=False, mininterval=5,
                      disable=not desc):
        logits = model(**collate([ids[i] for i in batch])).logits.float().cpu().numpy()
        for j, i in enumerate(batch):
            out[i] = logits[j]
    return np.stack(out)


def softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(axis=-1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=-1, keepdims=True)


# --------------------------------------------------------------------------------------- metrics
def metrics(task: str, y_true, y_pred, n_labels: int) -> dict:
    """TweetEval-style scores. `score` is the number this project ranks by:
    irony -> F1 of class 1 (irony); every other task -> macro-F1
    (sentiment's official TweetEval metric is macro-recall: reported beside it)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    f1s, recalls = [], []
    for c in range(n_labels):
        tp = int(((y_pred == c) & (y_true == c)).sum())
        fp = int(((y_pred == c) & (y_true != c)).sum())
        fn = int(((y_pred != c) & (y_true == c)).sum())
        p = tp / (tp + fp) if tp + fp else 0.0
        r = tp / (tp + fn) if tp + fn else 0.0
        f1s.append(2 * p * r / (p + r) if p + r else 0.0)
        recalls.append(r)
    m = {
        "macro_f1": float(np.mean(f1s)),
        "macro_recall": float(np.mean(recalls)),
        "accuracy": float((y_true == y_pred).mean()) if len(y_true) else 0.0,
        "f1_per_class": [float(f) for f in f1s],
        "n": int(len(y_true)),
    }
    m["metric"] = "f1_irony_class" if task == "irony" else "macro_f1"
    m["score"] = m["f1_per_class"][1] if task == "irony" else m["macro_f1"]
    return m


# ------------------------------------------------------------------------------------ train loop
def train_loop(
    model,
    param_groups: list[dict],
    train_ids: list[list[int]],
    train_labels: list[int],
    val_ids: list[list[int]],
    val_labels: list[int],
    task: str,
    n_labels: int,
    epochs: int,
    batch_size: int = 32,
    warmup: float = 0.06,
    patience: int = 2,
    budget_s: float | None = None,
    extra_loss: Callable[[], torch.Tensor | None] | None = None,
    trainable: Callable[[], dict[str, torch.Tensor]] | None = None,
    desc: str = "",
    seed: int = SEED,
) -> dict:
    """AdamW + linear warmup/decay; evaluates on val after every epoch, keeps the best epoch's
    trainable weights (selection on validation only), early-stops after `patience` epochs without
    improvement or when the next epoch would not fit in `budget_s`. Restores the best weights."""
    from transformers import get_linear_schedule_with_warmup

    set_seed(seed)
    rng = np.random.RandomState(seed)
    params = [p for g in param_groups for p in g["params"]]
    opt = torch.optim.AdamW(param_groups, weight_decay=0.01)
    steps_per_epoch = math.ceil(len(train_ids) / batch_size)
    sched = get_linear_schedule_with_warmup(opt, int(warmup * steps_per_epoch * epochs), steps_per_epoch * epochs)
    lengths = [len(s) for s in train_ids]
    y = torch.tensor(train_labels, dtype=torch.long)
    loss_fn = torch.nn.CrossEntropyLoss()
    trainable = trainable or (lambda: {n: p for n, p in model.named_parameters() if p.requires_grad})

    best = {"score": -1.0}
    best_state = None
    history = []
    t_start = time.time()
    bad = 0
    stop_reason = "planned epochs done"
    for epoch in range(1, epochs + 1):
        t0 = time.time()
        model.train()
        total, count = 0.0, 0
        bar = tqdm(train_batches(lengths, batch_size, rng), desc=f"{desc} ep{epoch}/{epochs}", mininterval=5)
        for batch in bar:
            out = model(**collate([train_ids[i] for i in batch]))
            loss = loss_fn(out.logits, y[batch])
            reg = extra_loss() if extra_loss else None
            full = loss + reg if reg is not None else loss
            full.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            total += loss.item() * len(batch)
            count += len(batch)
            bar.set_postfix(loss=f"{total / count:.4f}", refresh=False)
        t_train = time.time() - t0
        logits = predict_logits(model, val_ids, desc=f"{desc} val")
        m = metrics(task, val_labels, logits.argmax(-1), n_labels)
        t_epoch = time.time() - t0
        rec = {"epoch": epoch, "train_loss": total / count, "val": m, "train_s": round(t_train, 1), "epoch_s": round(t_epoch, 1)}
        history.append(rec)
        improved = m["score"] > best["score"]
        if improved:
            best = {"score": m["score"], "epoch": epoch, "val": m}
            best_state = {n: p.detach().clone() for n, p in trainable().items()}
            bad = 0
        else:
            bad += 1
        print(f"[{desc}] epoch {epoch}: loss {total / count:.4f} val {m['metric']} {m['score']:.4f} "
              f"macroF1 {m['macro_f1']:.4f} ({t_epoch:.0f}s){' *' if improved else ''}", flush=True)
        elapsed = time.time() - t_start
        if bad >= patience:
            stop_reason = f"early stop (patience {patience})"
            print(f"[{desc}] {stop_reason}", flush=True)
            break
        if budget_s is not None and epoch < epochs and elapsed + t_epoch > budget_s:
            stop_reason = f"time budget {budget_s:.0f}s: next epoch would not fit"
            print(f"[{desc}] stop: {stop_reason}", flush=True)
            break
    with torch.no_grad():
        cur = trainable()
        for n, v in best_state.items():
            cur[n].copy_(v)
    return {"best_epoch": best["epoch"], "best_val": best["val"], "history": history,
            "epochs_run": len(history), "stop_reason": stop_reason, "train_wall_s": round(time.time() - t_start, 1)}


# ---------------------------------------------------------------------------------------- output
def env_info() -> dict:
    import adapters
    import transformers

    return {"python": platform.python_version(), "torch": torch.__version__, "adapters": adapters.__version__,
            "transformers": transformers.__version__, "threads": torch.get_num_threads(),
            "machine": f"{platform.machine()} {os.cpu_count()} cpus"}


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2) + "\n")


def load_backbone():
    from adapters import AutoAdapterModel

    model = AutoAdapterModel.from_pretrained(str(BACKBONE))
    # Saved adapter/head configs record this as "model_name": keep it machine-independent.
    model.config.name_or_path = BACKBONE_HUB_ID
    return model


def check_no_bin(d: Path) -> None:
    bins = [p.name for p in Path(d).iterdir() if p.suffix == ".bin"]
    assert not bins, f"{d}: unexpected .bin files {bins}"
