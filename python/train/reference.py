"""Parity reference for the server: loads the SAVED library from models/ into fresh models, as a user
would (load_adapter / load_adapter_fusion with their heads), and writes two kinds of reference for
every route served by models/library.json (five adapters, two fusions):

- test/fixtures/library-reference/<route>.json, from TweetEval (needs --data):
  route, task, data_split "val", lines [0..N-1], probabilities (softmax, 6 decimals), labels (id2label),
  score_300 (metric on those lines), score_full_val (metric over the whole val split), max_length, ...
  No tweet text is written.
- test/fixtures/library-reference/samples-reference.json, from the texts in samples.json (written for
  this project, committed, no data needed): per route its labels and probabilities on every text.
  These are what the tests check when TweetEval is not at hand.

`--part samples` writes only the second, `--part tweeteval` only the first; the default writes both. Tokenisation: the backbone's tokenizer.json via BertTokenizerFast,
[CLS] text [SEP], token_type_ids all 0, truncation at 512 (no validation tweet comes close).
The N reference lines are run one at a time (no padding); the full split is run in padded batches.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

import common as C

MAX_LENGTH = C.EVAL_MAX_LEN  # 512


def adapter_model(models: Path, task: str, version: str):
    model = C.load_backbone()
    model.load_adapter(str(models / "adapters" / task / version), with_head=True, use_safetensors=True)
    model.set_active_adapters(task)
    model.active_head = task
    return model


def fusion_model(models: Path, route: str, lib: dict):
    from adapters import Fuse

    model = C.load_backbone()
    for task in C.TASKS:
        model.load_adapter(str(models / "adapters" / task / lib["adapters"][task]), with_head=False,
                           use_safetensors=True)
    model.load_adapter_fusion(str(models / "fusions" / route / lib["fusions"][route]), with_head=True,
                              use_safetensors=True)
    model.set_active_adapters(Fuse(*C.TASKS))
    model.active_head = route
    return model


def route_model(models: Path, route: str, lib: dict):
    if route in lib["fusions"]:
        return fusion_model(models, route, lib)
    return adapter_model(models, route, lib["adapters"][route])


def head_labels(model, route: str) -> list[str]:
    label2id = model.heads[route].config["label2id"]
    return [name for name, _ in sorted(label2id.items(), key=lambda kv: kv[1])]


def sample_references(args, lib: dict, routes: list[str], tok) -> None:
    texts = json.loads((args.out / "samples.json").read_text(encoding="utf-8"))["texts"]
    ids = C.encode(tok, texts, MAX_LENGTH)
    out = {"tokenization": "tokenizer.json (BertTokenizerFast), [CLS] text [SEP], token_type_ids 0, no padding",
           "texts": len(texts), "routes": {}}
    for route in routes:
        model = route_model(args.models, route, lib)
        one = np.stack([C.softmax(C.predict_logits(model, [s], batch_size=1, desc="")[0]) for s in ids])
        out["routes"][route] = {
            "version": lib["fusions" if route in lib["fusions"] else "adapters"][route],
            "labels": head_labels(model, route),
            "probabilities": [[round(float(p), 6) for p in row] for row in one],
        }
        print(f"{route:13s} {len(texts)} sample texts, labels {np.bincount(one.argmax(-1)).tolist()}", flush=True)
    C.write_json(args.out / "samples-reference.json", out)


def trainer_score(runs: Path, route: str):
    p = runs / ("stage2" if route in C.TARGETS else "stage1") / f"{route}.json"
    return json.loads(p.read_text())["best_val"]["score"] if p.exists() else None


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    C.data_argument(ap)
    ap.add_argument("--models", type=Path, default=C.MODELS)
    ap.add_argument("--runs", type=Path, default=C.RUNS)
    ap.add_argument("--out", type=Path, default=C.REPO / "test" / "fixtures" / "library-reference")
    ap.add_argument("--lines", type=int, default=300)
    ap.add_argument("--routes", default=None, help="comma list; default: all routes in library.json")
    ap.add_argument("--part", choices=["all", "samples", "tweeteval"], default="all")
    args = ap.parse_args()
    C.setup()
    lib = json.loads((args.models / "library.json").read_text())
    routes = args.routes.split(",") if args.routes else list(lib["adapters"]) + list(lib["fusions"])
    tok = C.load_tokenizer()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.part != "tweeteval":
        sample_references(args, lib, routes, tok)
    if args.part == "samples":
        return
    C.require_data(args.data)
    for route in routes:
        is_fusion = route in lib["fusions"]
        task = C.TARGETS[route] if is_fusion else route
        model = route_model(args.models, route, lib)
        labels = head_labels(model, route)
        assert labels == [v for _, v in sorted(C.read_id2label(args.data, task).items())], (labels, task)
        texts, gold = C.load_split(args.data, task, "val")
        ids = C.encode(tok, texts, MAX_LENGTH)
        assert max(len(s) for s in ids) < MAX_LENGTH
        full = C.softmax(C.predict_logits(model, ids, desc=f"{route} full val"))
        n = min(args.lines, len(ids))
        one = np.stack([C.softmax(C.predict_logits(model, [ids[i]], batch_size=1, desc="")[0]) for i in range(n)])
        batch_vs_single = float(np.abs(one - full[:n]).max())
        m300 = C.metrics(task, gold[:n], one.argmax(-1), len(labels))
        mfull = C.metrics(task, gold, full.argmax(-1), len(labels))
        ts = trainer_score(args.runs, route)
        rec = {
            "route": route, "task": task, "kind": "fusion" if is_fusion else "adapter",
            "version": lib["fusions" if is_fusion else "adapters"][route],
            "adapters": C.TASKS if is_fusion else [task],
            "data_split": "val", "lines": list(range(n)),
            "probabilities": [[round(float(p), 6) for p in row] for row in one],
            "labels": labels, "metric": m300["metric"],
            "score_300": m300["score"], "score_full_val": mfull["score"], "n_full_val": len(ids),
            "macro_f1_full_val": mfull["macro_f1"], "macro_recall_full_val": mfull["macro_recall"],
            "trainer_score_full_val": ts,
            "max_length": MAX_LENGTH, "max_tokens_in_val": max(len(s) for s in ids),
            "tokenization": "tokenizer.json (BertTokenizerFast), [CLS] text [SEP], token_type_ids 0, no padding",
            "max_abs_diff_batched_vs_single": batch_vs_single,
        }
        C.write_json(args.out / f"{route}.json", rec)
        flag = "" if ts is None or abs(ts - mfull["score"]) < 1e-9 else f"  (trainer said {ts:.4f}!)"
        print(f"{route:13s} {m300['metric']:15s} 300: {m300['score']:.4f}  full val: {mfull['score']:.4f}"
              f"{flag}  batched-vs-single max diff {batch_vs_single:.2e}", flush=True)


if __name__ == "__main__":
    main()
