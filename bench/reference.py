#!/usr/bin/env python3
"""The AdapterHub reference for the benchmark: the `adapters` library's own forward pass (PyTorch, eval,
torch.inference_mode) on a fusion loaded from its save directory, timed on the benchmark's inputs.

Loads exactly what a user would: the backbone checkpoint, `load_adapter` for every fused adapter and
`load_adapter_fusion(..., with_head=True)` for the fusion, then `set_active_adapters(Fuse(...))`.

Inputs are the benchmark's deterministic token ids (the same formula as bench/inputs.ts), every token real.
Also times PyTorch's plain backbone, for context, and the fused model after torch's own dynamic int8
quantization, against which the engine's --precision int8 is compared too. Writes JSON: per shape the sorted run times in ms, plus the reference hidden state and logits of a small
parity input so the TypeScript side can confirm both engines computed on the same weights.

Usage: python bench/reference.py --library DIR --fusion fuse5 --threads 2 --shapes 1x16,8x64 --out FILE
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time
import warnings
from pathlib import Path

import torch
from transformers.utils import logging as hf_logging

import adapters
from adapters import BertAdapterModel, Fuse

CLS, SEP = 101, 102


def bench_ids(batch: int, seq: int) -> torch.Tensor:
    """Deterministic ids: [CLS] w... [SEP]; must match benchIds() in bench/inputs.ts."""
    ids = torch.empty(batch, seq, dtype=torch.int64)
    for b in range(batch):
        for t in range(seq):
            ids[b, t] = 1000 + (b * 7919 + t * 104729) % 29000
        ids[b, 0] = CLS
        ids[b, seq - 1] = SEP
    return ids


def busy_ticks() -> int:
    """Busy ticks of all CPUs together (user, nice, system, irq, softirq) from /proc/stat; 0 elsewhere."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return v[0] + v[1] + v[2] + v[5] + v[6]
    except (OSError, ValueError, IndexError):
        return 0


def others_probe():
    """Starts measuring other processes' CPU (all CPUs' busy time minus this process's own);
    the returned function gives their use in % of one core."""
    hz = os.sysconf("SC_CLK_TCK")
    busy0, own0, t0 = busy_ticks(), os.times(), time.perf_counter()

    def stop() -> float:
        busy, own, seconds = busy_ticks() - busy0, os.times(), time.perf_counter() - t0
        mine = (own.user + own.system + own.children_user + own.children_system
                - own0.user - own0.system - own0.children_user - own0.children_system) * hz
        return max(0.0, busy - mine) / hz / seconds * 100 if seconds > 0 else 0.0

    return stop


def wait_for_quiet(threshold: float, max_s: float = 90.0) -> None:
    deadline = time.time() + max_s
    while time.time() < deadline:
        stop = others_probe()
        time.sleep(2)
        if stop() < threshold:
            return


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--library", required=True)
    ap.add_argument("--fusion", default="fuse5")
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--shapes", required=True, help="comma separated BxT")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--min-reps", type=int, default=5)
    ap.add_argument("--max-reps", type=int, default=30)
    ap.add_argument("--min-seconds", type=float, default=1.0)
    ap.add_argument("--parity-shape", default="2x16")
    ap.add_argument("--plain-shapes", default="1x16,32x64", help="shapes also timed without adapters (PyTorch backbone alone)")
    ap.add_argument("--int8-shapes", default="1x16,32x64", help="shapes also timed after torch's own dynamic int8 quantization of every nn.Linear")
    ap.add_argument("--threshold", type=float, default=25.0, help="others' CPU (%% of a core) that disturbs a measurement")
    ap.add_argument("--retries", type=int, default=3)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    hf_logging.set_verbosity_error()
    logging.getLogger("adapters").setLevel(logging.ERROR)

    lib = Path(args.library)
    manifest = json.loads((lib / "library.json").read_text())
    backbone = (lib / manifest["backbone"]).resolve()
    fusion_dir = lib / "fusions" / args.fusion / manifest["fusions"][args.fusion]
    fusion_cfg = json.loads((fusion_dir / "adapter_fusion_config.json").read_text())
    names = fusion_cfg["adapter_names"]

    t0 = time.perf_counter()
    model = BertAdapterModel.from_pretrained(str(backbone))
    for name in names:
        model.load_adapter(str(lib / "adapters" / name / manifest["adapters"][name]), use_safetensors=True)
    model.load_adapter_fusion(str(fusion_dir), use_safetensors=True, with_head=True)
    model.set_active_adapters(Fuse(*names))
    model.active_head = args.fusion
    model.eval()
    load_s = time.perf_counter() - t0

    def forward(ids: torch.Tensor, hidden: bool = False):
        return model(input_ids=ids, attention_mask=torch.ones_like(ids), output_hidden_states=hidden)

    result = {
        "fusion": args.fusion,
        "adapters": names,
        "threads": args.threads,
        "torch": torch.__version__,
        "adapters_version": adapters.__version__,
        "attn_implementation": getattr(model.config, "_attn_implementation", "?"),
        "python": platform.python_version(),
        "load_s": round(load_s, 2),
        "shapes": {},
        "others_percent": {},
    }
    with torch.inference_mode():
        pb, pt = (int(v) for v in args.parity_shape.split("x"))
        out = forward(bench_ids(pb, pt), hidden=True)
        result["parity"] = {
            "batch": pb,
            "seq": pt,
            "hidden": out.hidden_states[-1].flatten().tolist(),
            "logits": out.logits.flatten().tolist(),
        }
        def measure(shape: str, label: str):
            b, t = (int(v) for v in shape.split("x"))
            ids = bench_ids(b, t)
            for attempt in range(args.retries + 1):
                stop = others_probe()
                for _ in range(args.warmup):
                    forward(ids)
                times = []
                start = time.perf_counter()
                while len(times) < args.max_reps and (len(times) < args.min_reps or time.perf_counter() - start < args.min_seconds):
                    t1 = time.perf_counter()
                    forward(ids)
                    times.append((time.perf_counter() - t1) * 1000)
                others = stop()
                if others < args.threshold or attempt == args.retries:
                    break
                print(f"{label} {shape}: other processes used {others:.0f}% of a core meanwhile; waiting for a quiet machine to measure again", flush=True)
                wait_for_quiet(args.threshold)
            times.sort()
            print(f"{label} {shape}: median {times[len(times) // 2]:.1f} ms over {len(times)} runs", flush=True)
            return times, round(others, 1)

        for shape in args.shapes.split(","):
            result["shapes"][shape], result["others_percent"][shape] = measure(shape, "reference")
        # The same model with no adapter active: PyTorch's plain backbone, for context.
        model.set_active_adapters(None)
        result["plain_shapes"], result["plain_others_percent"] = {}, {}
        for shape in filter(None, args.plain_shapes.split(",")):
            result["plain_shapes"][shape], result["plain_others_percent"][shape] = measure(shape, "PyTorch plain backbone")
        # The fused model after PyTorch's own dynamic int8 quantization (every nn.Linear, adapters
        # and fusion included), beside this engine's --precision int8: int8 against int8.
        model.set_active_adapters(Fuse(*names))
        int8_shapes = list(filter(None, args.int8_shapes.split(",")))
        if int8_shapes:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch.ao.quantization announces its move to torchao
                model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
            result["int8_engine"] = torch.backends.quantized.engine
        result["int8_shapes"], result["int8_others_percent"] = {}, {}
        for shape in int8_shapes:
            result["int8_shapes"][shape], result["int8_others_percent"][shape] = measure(shape, "reference, torch dynamic int8")
    Path(args.out).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
