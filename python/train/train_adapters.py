"""Stage 1: one `seq_bn` adapter (reduction_factor 16) + classification head per TweetEval task.

Backbone frozen (model.train_adapter). Best epoch chosen on the validation split.
Writes models/adapters/<task>/<version>/ (safetensors only) and python/train/runs/stage1/<task>.json.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import common as C

# Per-task plan, sized so that the whole recipe fits in one hour on 2 CPU cores
# (see README.md). max_train: random subset of the training split (fixed seed); None = all.
PLAN = {
    "sentiment": dict(max_train=6000, epochs=2, lr=1e-3),
    "emotion": dict(max_train=None, epochs=4, lr=1e-3),
    "offensive": dict(max_train=6000, epochs=2, lr=1e-3),
    "irony": dict(max_train=None, epochs=5, lr=1e-3),
    "hate": dict(max_train=6000, epochs=3, lr=1e-3),
}
MAX_LEN = 128
BATCH = 32


def train_task(task: str, args) -> dict:
    from adapters import SeqBnConfig

    plan = dict(PLAN[task])
    if args.epochs:
        plan["epochs"] = args.epochs
    if args.lr:
        plan["lr"] = args.lr
    if args.smoke:
        plan.update(max_train=64, epochs=1)
    t0 = time.time()
    C.set_seed(C.SEED)
    id2label = C.read_id2label(args.data, task)
    tr_x, tr_y = C.load_split(args.data, task, "train")
    n_full = len(tr_x)
    tr_x, tr_y, _ = C.subsample(tr_x, tr_y, plan["max_train"])
    va_x, va_y = C.load_split(args.data, task, "val")
    if args.smoke:
        va_x, va_y = va_x[:64], va_y[:64]
    tok = C.load_tokenizer()
    tr_ids, va_ids = C.encode(tok, tr_x, MAX_LEN), C.encode(tok, va_x, C.EVAL_MAX_LEN)

    model = C.load_backbone()
    adapter_config = SeqBnConfig(reduction_factor=16)
    model.add_adapter(task, config=adapter_config)
    model.add_classification_head(task, num_labels=len(id2label), id2label=id2label)
    model.train_adapter(task)  # freezes the backbone, activates adapter `task`
    model.active_head = task
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert all(f"adapters.{task}." in n or f"heads.{task}." in n for n in trainable), list(trainable)
    n_trainable = sum(p.numel() for p in trainable.values())
    print(f"[{task}] train {len(tr_ids)}/{n_full}  val {len(va_ids)}  trainable params {n_trainable}", flush=True)

    res = C.train_loop(model, [{"params": list(trainable.values()), "lr": plan["lr"]}], tr_ids, tr_y, va_ids, va_y,
                       task, len(id2label), plan["epochs"], batch_size=BATCH, patience=args.patience, desc=task)

    out_dir = Path(args.models) / "adapters" / task / args.version
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_adapter(str(out_dir), task, with_head=True, use_safetensors=True)
    C.check_no_bin(out_dir)
    wall = round(time.time() - t0, 1)
    record = {
        "stage": "1-adapter", "route": task, "task": task, "adapter": "seq_bn", "reduction_factor": 16,
        "id2label": id2label, "n_train": len(tr_ids), "n_train_full": n_full,
        "subsampled": plan["max_train"] is not None and plan["max_train"] < n_full,
        "n_val": len(va_ids), "max_length": MAX_LEN, "eval_max_length": C.EVAL_MAX_LEN, "batch_size": BATCH, "lr": plan["lr"],
        "epochs_planned": plan["epochs"], "patience": args.patience, "seed": C.SEED,
        "trainable_params": n_trainable, "saved_to": str(out_dir.relative_to(Path(args.models).parent)),
        **res, "wall_s": wall, "env": C.env_info(), "smoke": bool(args.smoke),
    }
    C.write_json(Path(args.runs) / "stage1" / f"{task}.json", record)
    print(f"[{task}] best epoch {res['best_epoch']} val {res['best_val']['metric']} "
          f"{res['best_val']['score']:.4f}  wall {wall:.0f}s -> {out_dir}", flush=True)
    return record


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    C.data_argument(ap)
    ap.add_argument("--models", type=Path, default=C.MODELS, help="model library root (models/)")
    ap.add_argument("--runs", type=Path, default=C.RUNS, help="where metrics JSON go")
    ap.add_argument("--version", default="1")
    ap.add_argument("--tasks", default=",".join(C.TASKS))
    ap.add_argument("--epochs", type=int, default=None, help="override the per-task plan")
    ap.add_argument("--lr", type=float, default=None, help="override the per-task plan")
    ap.add_argument("--patience", type=int, default=2)
    ap.add_argument("--smoke", action="store_true", help="64 examples, 1 epoch: checks the plumbing")
    args = ap.parse_args()
    C.require_data(args.data)
    C.setup()
    t0 = time.time()
    for task in args.tasks.split(","):
        train_task(task, args)
    print(f"stage 1 wall {time.time() - t0:.0f}s", flush=True)


if __name__ == "__main__":
    main()
