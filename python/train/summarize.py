"""Collects the metrics JSON of all runs into python/train/runs/summary.json, writes models/library.json,
and prints the validation table used in models/README.md."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import common as C

# TweetEval leaderboard, full fine-tuning, TEST set (from the data folder's README.md).
PUBLISHED_TEST = {
    "hate": {"RoBERTa-base": 46.6, "RoBERTa-Twitter": 49.9, "FastText": 50.6, "BERTweet": 56.4},
    "irony": {"RoBERTa-base": 59.7, "BERTweet": 82.1},
}


def load(path: Path):
    return json.loads(path.read_text()) if path.exists() else None


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=Path, default=C.RUNS)
    ap.add_argument("--models", type=Path, default=C.MODELS)
    ap.add_argument("--total-s", type=float, default=None, help="wall time of the whole recipe")
    ap.add_argument("--adapter-version", default="1")
    ap.add_argument("--fusion-version", default="1")
    args = ap.parse_args()

    stage1 = {t: load(args.runs / "stage1" / f"{t}.json") for t in C.TASKS}
    stage2 = {r: load(args.runs / "stage2" / f"{r}.json") for r in C.TARGETS}
    base = {t: load(args.runs / "baselines" / f"{t}.json") for t in C.TARGETS.values()}

    summary = {"adapters": {}, "targets": {}, "wall_s": {}}
    print("| task | metric | single adapter (val) | macro-F1 | macro-recall | best epoch / run | train n | wall s |")
    print("|---|---|---|---|---|---|---|---|")
    for t, r in stage1.items():
        if not r:
            continue
        v = r["best_val"]
        summary["adapters"][t] = {"metric": v["metric"], "score": v["score"], "macro_f1": v["macro_f1"],
                                  "macro_recall": v["macro_recall"], "best_epoch": r["best_epoch"],
                                  "n_train": r["n_train"], "wall_s": r["wall_s"]}
        print(f"| {t} | {v['metric']} | {100 * v['score']:.2f} | {100 * v['macro_f1']:.2f} | "
              f"{100 * v['macro_recall']:.2f} | {r['best_epoch']}/{r['epochs_run']} | {r['n_train']}/{r['n_train_full']} | {r['wall_s']:.0f} |")
    print()
    print("| target | metric | head-only (val) | single adapter (val) | fusion (val) | fusion - adapter | published full FT (test) |")
    print("|---|---|---|---|---|---|---|")
    for route, t in C.TARGETS.items():
        s1, s2, b = stage1.get(t), stage2.get(route), base.get(t)
        row = {"route": route, "metric": "f1_irony_class" if t == "irony" else "macro_f1",
               "head_only": b["best_val"]["score"] if b else None,
               "single_adapter": s1["best_val"]["score"] if s1 else None,
               "fusion": s2["best_val"]["score"] if s2 else None,
               "fusion_lr": s2["lr_fusion"] if s2 else None,
               "published_test": PUBLISHED_TEST[t]}
        if row["fusion"] is not None and row["single_adapter"] is not None:
            row["fusion_minus_adapter"] = row["fusion"] - row["single_adapter"]
        summary["targets"][t] = row
        f = lambda x: f"{100 * x:.2f}" if x is not None else "-"
        pub = ", ".join(f"{k} {v}" for k, v in PUBLISHED_TEST[t].items())
        d = row.get("fusion_minus_adapter")
        print(f"| {t} | {row['metric']} | {f(row['head_only'])} | {f(row['single_adapter'])} | {f(row['fusion'])} | "
              f"{'%+.2f' % (100 * d) if d is not None else '-'} | {pub} |")
    summary["wall_s"] = {
        "stage1_adapters": round(sum(r["wall_s"] for r in stage1.values() if r), 1),
        "stage1_per_task": {t: r["wall_s"] for t, r in stage1.items() if r},
        "stage2_fusions": round(sum(r["wall_s"] for r in stage2.values() if r), 1),
        "stage2_per_route": {t: r["wall_s"] for t, r in stage2.items() if r},
        "baselines": round(sum(r["wall_s"] for r in base.values() if r), 1),
        "total_recipe": args.total_s,
    }
    w = summary["wall_s"]
    w["sum_of_stages"] = round(w["stage1_adapters"] + w["stage2_fusions"] + w["baselines"], 1)
    print()
    print("wall times (s):", json.dumps(summary["wall_s"]))
    C.write_json(args.runs / "summary.json", summary)

    library = {
        "backbone": C.BACKBONE_REL,
        "adapters": {t: args.adapter_version for t in C.TASKS
                     if (args.models / "adapters" / t / args.adapter_version).is_dir()},
        "fusions": {r: args.fusion_version for r in C.TARGETS
                    if (args.models / "fusions" / r / args.fusion_version).is_dir()},
    }
    C.write_json(args.models / "library.json", library)
    print(f"wrote {args.models / 'library.json'}")


if __name__ == "__main__":
    main()
