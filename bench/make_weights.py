#!/usr/bin/env python3
"""Writes the benchmark's synthetic-but-real weights with the `adapters` library itself.

8 random `seq_bn` adapters (reduction factor 16) and dynamic AdapterFusions of N = 1, 2, 5, 8 of them, each
fusion with a 3-label classification head, on the all-MiniLM-L6-v2 backbone, saved exactly as users save them
(`save_adapter` / `save_adapter_fusion`, use_safetensors=True) in the server's library layout:

    OUT/library.json                      {"backbone": <relative path>, "adapters": {...}, "fusions": {...}}
    OUT/adapters/b<i>/1/                  adapter_config.json, adapter.safetensors
    OUT/fusions/fuse<N>/1/                adapter_fusion_config.json, model_adapter_fusion.safetensors, head files
    OUT/meta.json                         what was written, and fusion attention statistics

Parameters are randomized moderately (adapters change the hidden state noticeably, fusion attention is
clearly non-uniform but not one-hot), so both engines compute on the very same non-trivial weights.
Deterministic (fixed seeds).  Usage: python bench/make_weights.py --backbone DIR --out DIR
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import time
import zlib
from pathlib import Path

import torch
from transformers.utils import logging as hf_logging

import adapters
from adapters import BertAdapterModel, Fuse, SeqBnConfig

FORMAT = 1  # bump when the layout or the randomization changes; bench/run.ts rebuilds on mismatch
ADAPTERS = [f"b{i}" for i in range(8)]
FUSION_SIZES = [1, 2, 5, 8]


def gen(label: str) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(zlib.crc32(label.encode()) & 0x7FFFFFFF)
    return g


def randomize_(params: dict, label: str, rule) -> None:
    g = gen(label)
    with torch.no_grad():
        for name in sorted(params):
            params[name].copy_(rule(name, params[name].shape, g))


def adapter_rule(name, shape, g):
    n = torch.randn(shape, generator=g)
    if name.endswith("bias"):
        return 0.05 * n
    if "adapter_down" in name:  # [r, d]: pre-activation std about 1 for a LayerNormed input
        return n / shape[1] ** 0.5
    return 0.5 * n / shape[1] ** 0.5  # adapter_up [d, r]: output std about 0.35


def fusion_rule(name, shape, g):
    n = torch.randn(shape, generator=g)
    if name.endswith("bias"):
        return 0.02 * n
    if ".value." in name:  # identity (the library's value_initialized) plus noise
        return torch.eye(shape[0]) + 0.02 * n
    return 0.5 * n / shape[1] ** 0.5  # query / key: scores spread, softmax neither uniform nor one-hot


def head_rule(name, shape, g):
    n = torch.randn(shape, generator=g)
    return (0.02 if name.endswith("bias") else 0.05) * n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backbone", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    t0 = time.time()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    hf_logging.set_verbosity_error()
    logging.getLogger("adapters").setLevel(logging.ERROR)
    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)

    model = BertAdapterModel.from_pretrained(args.backbone)
    model.config._name_or_path = "sentence-transformers/all-MiniLM-L6-v2"  # model_name in the saved configs
    model.eval()
    for name in ADAPTERS:
        model.add_adapter(name, config=SeqBnConfig(reduction_factor=16))
        randomize_({n: p for n, p in model.named_parameters() if f".adapters.{name}." in n}, f"adapter:{name}", adapter_rule)
        (out / "adapters" / name / "1").mkdir(parents=True)
        model.save_adapter(str(out / "adapters" / name / "1"), name, with_head=False, use_safetensors=True)

    ids = torch.randint(1000, 30000, (4, 64), generator=gen("inputs"))
    stats = {}
    with torch.inference_mode():
        plain = model(input_ids=ids, output_hidden_states=True).hidden_states[-1]
    for n in FUSION_SIZES:
        fname = f"fuse{n}"
        fuse = Fuse(*ADAPTERS[:n])
        model.add_adapter_fusion(fuse, config="dynamic")
        model.add_classification_head(fname, num_labels=3, id2label={i: f"L{i}" for i in range(3)})
        randomize_({k: p for k, p in model.named_parameters() if f"adapter_fusion_layer.{fuse.name}." in k},
                   f"fusion:{fname}", fusion_rule)
        randomize_({k: p for k, p in model.named_parameters() if f"heads.{fname}." in k}, f"head:{fname}", head_rule)
        (out / "fusions" / fname / "1").mkdir(parents=True)
        model.save_adapter_fusion(str(out / "fusions" / fname / "1"), fuse.name, with_head=fname, use_safetensors=True)
        model.set_active_adapters(fuse)
        model.active_head = fname
        with torch.inference_mode():
            res = model(input_ids=ids, output_hidden_states=True, output_adapter_fusion_attentions=True)
        att = torch.stack([torch.as_tensor(v["output_adapter"]) for _, v in sorted(res["adapter_fusion_attentions"][fuse.name].items())])
        stats[fname] = {
            "adapters": ADAPTERS[:n],
            "mean_max_prob": round(float(att.max(-1).values.mean()), 3),
            "uniform": round(1 / n, 3),
            "mean_abs_change_vs_plain": round(float((res.hidden_states[-1] - plain).abs().mean()), 3),
        }
        model.delete_adapter_fusion(fuse)

    (out / "library.json").write_text(json.dumps({
        "backbone": os.path.relpath(Path(args.backbone).resolve(), out.resolve()),
        "adapters": {a: "1" for a in ADAPTERS},
        "fusions": {f"fuse{n}": "1" for n in FUSION_SIZES},
    }, indent=2) + "\n")
    (out / "meta.json").write_text(json.dumps({
        "format": FORMAT, "adapters_version": adapters.__version__, "torch_version": torch.__version__,
        "fusions": stats, "seconds": round(time.time() - t0, 1)}, indent=2) + "\n")
    print(json.dumps(stats))


if __name__ == "__main__":
    main()
