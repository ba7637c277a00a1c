#!/usr/bin/env python3
"""Checks a route exported by `npm run export` against a live server: ONNX Runtime gives the server's answers.

Reads texts (one per line), tokenizes them with the export's own tokenizer.json (Python `tokenizers`), cuts them
as route.json says, and runs model.onnx with Python onnxruntime; asks the server for the same texts
(POST /v1/predict/{route} with raw_scores and explain); prints the largest differences of logits, probabilities
and fusion weights. Exits 1 when the logits differ by more than --tolerance, or the server serves another
version of the route than the one exported.

    npm run export -- --route hate-fusion --out exported/hate-fusion
    npm start &                      # the server, on the same library
    python python/export/check_export.py exported/hate-fusion --texts val_text.txt --limit 100 --server http://127.0.0.1:8080

Needs onnxruntime, tokenizers and numpy (python/requirements.txt).
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.request
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

CHUNK = 32  # texts per request and per ONNX Runtime run


def encode(tokenizer: Tokenizer, text: str, max_length: int) -> list[int]:
    ids = tokenizer.encode(text).ids
    return ids if len(ids) <= max_length else ids[: max_length - 1] + ids[-1:]


def run_model(session: ort.InferenceSession, rows: list[list[int]]) -> dict[str, np.ndarray]:
    T = max(len(r) for r in rows)
    ids = np.zeros((len(rows), T), dtype=np.int64)
    mask = np.zeros((len(rows), T), dtype=np.int64)
    for b, r in enumerate(rows):
        ids[b, : len(r)] = r
        mask[b, : len(r)] = 1
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, {"input_ids": ids, "attention_mask": mask})))


def ask_server(url: str, route: str, texts: list[str]) -> dict:
    body = json.dumps({"inputs": texts, "raw_scores": True, "explain": True}).encode()
    request = urllib.request.Request(f"{url.rstrip('/')}/v1/predict/{route}", data=body,
                                     headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.load(response)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("export_dir", type=Path)
    ap.add_argument("--texts", type=Path, required=True, help="one text per line")
    ap.add_argument("--limit", type=int, default=100, help="first N texts")
    ap.add_argument("--server", required=True, help="base URL of a server on the library the route was exported from")
    ap.add_argument("--tolerance", type=float, default=1e-5)
    args = ap.parse_args()

    route = json.loads((args.export_dir / "route.json").read_text())
    labels = route["labels"]
    tagging = route["head_type"] == "tagging"
    tokenizer = Tokenizer.from_file(str(args.export_dir / route["files"]["tokenizer"]))
    # Some tokenizer.json files (sentence-transformers') pad and cut on their own; route.json says how to cut.
    tokenizer.no_padding()
    tokenizer.no_truncation()
    session = ort.InferenceSession(str(args.export_dir / route["files"]["model"]), providers=["CPUExecutionProvider"])
    texts = args.texts.read_text(encoding="utf-8").split("\n")[: args.limit]

    worst = {"logits": 0.0, "probabilities": 0.0, "fusion_weights": 0.0}
    versions = set()
    for start in range(0, len(texts), CHUNK):
        chunk = texts[start : start + CHUNK]
        rows = [encode(tokenizer, t, route["max_length"]) for t in chunk]
        ours = run_model(session, rows)
        answer = ask_server(args.server, route["route"], chunk)
        versions.add(answer["version"])
        for b, prediction in enumerate(answer["predictions"]):
            # One row of scores per input, or per token of it for a tagging head.
            served = prediction["tokens"] if tagging else [prediction]
            assert not tagging or len(served) == len(rows[b]), (start + b, len(served), len(rows[b]))
            for t, scored in enumerate(served):
                at = (b, t) if tagging else (b,)
                for key, field in (("logits", "logits"), ("probabilities", "scores")):
                    theirs = np.array([scored[field][label] for label in labels])
                    worst[key] = max(worst[key], float(np.abs(ours[key][at] - theirs).max()))
            if "fusion_weights" in ours:
                theirs = np.array([[layer[a] for a in route["adapters"]] for layer in prediction["fusion_weights"]])
                worst["fusion_weights"] = max(worst["fusion_weights"], float(np.abs(ours["fusion_weights"][b] - theirs).max()))

    print(f"route {route['route']} ({route['precision']}, exported version {route['version']}, server {sorted(versions)}): "
          f"{len(texts)} texts")
    for key, value in worst.items():
        if key != "fusion_weights" or route["fusion"]:
            print(f"  max |exported model (onnxruntime {ort.__version__}) - server| {key}: {value:.2e}")
    ok = worst["logits"] <= args.tolerance and versions == {route["version"]}
    print("OK" if ok else f"FAILED (tolerance {args.tolerance:g})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
