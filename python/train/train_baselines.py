"""Head-only baseline per target (hate, irony): frozen backbone, no adapter, classification head only.

The backbone's last-layer [CLS] vectors are computed once (eval mode) and cached in memory; the head
is the same architecture AdapterHub's default classification head uses (dropout, Linear(384,384),
tanh, dropout, Linear(384,n)). Same training subset as the target adapter; epoch and learning rate
chosen on the validation split. Writes python/train/runs/baselines/<target>.json (no weights kept).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

import common as C
from train_adapters import PLAN

MAX_LEN = 128
EPOCHS = 40
LRS = [1e-3, 3e-3]


@torch.inference_mode()
def cls_features(model, ids, desc):
    model.eval()
    out = [None] * len(ids)
    for batch in C.tqdm(C.eval_batches([len(s) for s in ids], 128), desc=desc, mininterval=5):
        h = model.base_model(**C.collate([ids[i] for i in batch])).last_hidden_state[:, 0]
        for j, i in enumerate(batch):
            out[i] = h[j]
    return torch.stack(out)


def head(n_labels, d=384, p=0.1):
    return torch.nn.Sequential(torch.nn.Dropout(p), torch.nn.Linear(d, d), torch.nn.Tanh(), torch.nn.Dropout(p),
                               torch.nn.Linear(d, n_labels))


def fit(task, n_labels, xtr, ytr, xva, yva, lr, epochs, batch=32):
    C.set_seed(C.SEED)
    net = head(n_labels)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=0.01)
    rng = np.random.RandomState(C.SEED)
    best, hist = None, []
    for ep in range(1, epochs + 1):
        net.train()
        perm = torch.as_tensor(rng.permutation(len(xtr)))
        for b in range(0, len(perm), batch):
            idx = perm[b : b + batch]
            loss = torch.nn.functional.cross_entropy(net(xtr[idx]), ytr[idx])
            loss.backward()
            opt.step()
            opt.zero_grad()
        net.eval()
        with torch.no_grad():
            m = C.metrics(task, yva.numpy(), net(xva).argmax(-1).numpy(), n_labels)
        hist.append({"epoch": ep, "score": m["score"]})
        if best is None or m["score"] > best["val"]["score"]:
            best = {"epoch": ep, "val": m}
    return best, hist


def run_target(target, args):
    t0 = time.time()
    id2label = C.read_id2label(args.data, target)
    tr_x, tr_y = C.load_split(args.data, target, "train")
    n_full = len(tr_x)
    max_train = 64 if args.smoke else PLAN[target]["max_train"]
    tr_x, tr_y, _ = C.subsample(tr_x, tr_y, max_train)
    va_x, va_y = C.load_split(args.data, target, "val")
    if args.smoke:
        va_x, va_y = va_x[:64], va_y[:64]
    tok = C.load_tokenizer()
    model = C.load_backbone()
    xtr = cls_features(model, C.encode(tok, tr_x, MAX_LEN), f"{target} train feats")
    xva = cls_features(model, C.encode(tok, va_x, C.EVAL_MAX_LEN), f"{target} val feats")
    t_feat = time.time() - t0
    ytr, yva = torch.tensor(tr_y), torch.tensor(va_y)
    tries = []
    for lr in LRS:
        best, hist = fit(target, len(id2label), xtr, ytr, xva, yva, lr, 2 if args.smoke else EPOCHS)
        tries.append({"lr": lr, "best_epoch": best["epoch"], "best_val": best["val"], "history": hist})
        print(f"[baseline {target}] lr {lr:g}: best epoch {best['epoch']} val {best['val']['score']:.4f}", flush=True)
    best = max(tries, key=lambda t: t["best_val"]["score"])
    wall = round(time.time() - t0, 1)
    record = {
        "stage": "baseline-head-only", "route": f"{target}-head-only", "task": target, "id2label": id2label,
        "n_train": len(tr_x), "n_train_full": n_full, "n_val": len(va_x), "max_length": MAX_LEN, "eval_max_length": C.EVAL_MAX_LEN,
        "features": "last-layer [CLS], backbone frozen, eval mode", "epochs_max": EPOCHS, "lr_candidates": LRS,
        "lr": best["lr"], "best_epoch": best["best_epoch"], "best_val": best["best_val"], "tries": tries,
        "feature_s": round(t_feat, 1), "wall_s": wall, "seed": C.SEED, "env": C.env_info(), "smoke": bool(args.smoke),
    }
    C.write_json(Path(args.runs) / "baselines" / f"{target}.json", record)
    print(f"[baseline {target}] lr {best['lr']:g} val {best['best_val']['metric']} {best['best_val']['score']:.4f} "
          f"wall {wall:.0f}s", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    C.data_argument(ap)
    ap.add_argument("--runs", type=Path, default=C.RUNS)
    ap.add_argument("--models", type=Path, default=C.MODELS, help="unused (run_all.sh passes the same flags to every stage)")
    ap.add_argument("--targets", default="hate,irony")
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args()
    C.require_data(args.data)
    C.setup()
    t0 = time.time()
    for t in args.targets.split(","):
        run_target(t, args)
    print(f"baselines wall {time.time() - t0:.0f}s", flush=True)


if __name__ == "__main__":
    main()
