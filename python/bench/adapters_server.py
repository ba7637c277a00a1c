#!/usr/bin/env python3
"""The baseline of bench/scale.ts: a library served with FastAPI and `adapters`, as a user would write it.

At start it loads everything the library lists: the backbone, every adapter with its head (`load_adapter`)
and every fusion with its head (`load_adapter_fusion`), then runs one forward pass per route; only then does
GET /ready answer 200. POST /v1/predict/{route} {"inputs": [...]} answers like the server's predict (label,
score, scores), one forward pass per request under a lock (the model is shared). Fusions over the same
adapters share one fusion layer in `adapters`, so each such fusion's weights are kept and copied in when a
request for it follows one for another.

Usage: python python/bench/adapters_server.py --library DIR --port 8081 --threads 2
"""

from __future__ import annotations

import argparse
import json
import logging
import threading
from pathlib import Path

import torch
import uvicorn
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel
from transformers import AutoTokenizer
from transformers.utils import logging as hf_logging

from adapters import BertAdapterModel, Fuse


class PredictBody(BaseModel):
    inputs: list[str]


def load(library: Path):
    manifest = json.loads((library / "library.json").read_text())
    backbone = library / manifest["backbone"]
    tokenizer = AutoTokenizer.from_pretrained(str(backbone))
    model = BertAdapterModel.from_pretrained(str(backbone))
    model.eval()
    routes: dict[str, dict] = {}
    for name, version in manifest["adapters"].items():
        d = library / "adapters" / name / version
        model.load_adapter(str(d), load_as=name, with_head=True, use_safetensors=True)
        routes[name] = {"adapters": name, "head": name}
    for name, version in manifest["fusions"].items():
        d = library / "fusions" / name / version
        names = json.loads((d / "adapter_fusion_config.json").read_text())["adapter_names"]
        fuse = Fuse(*names)
        if fuse.name in model.adapters_config.fusions:
            model.delete_adapter_fusion(fuse)
        model.load_adapter_fusion(str(d), with_head=True, use_safetensors=True)
        weights = {n: p.detach().clone() for n, p in model.named_parameters() if f"adapter_fusion_layer.{fuse.name}." in n}
        routes[name] = {"adapters": fuse, "head": name, "fusion_weights": weights}
    return tokenizer, model, routes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--library", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    hf_logging.set_verbosity_error()
    logging.getLogger("adapters").setLevel(logging.ERROR)

    tokenizer, model, routes = load(Path(args.library))
    lock = threading.Lock()
    loaded: dict[str, str] = {}  # fusion layer name -> route whose weights it holds

    def forward(route: str, texts: list[str]):
        r = routes[route]
        with lock, torch.inference_mode():
            weights = r.get("fusion_weights")
            if weights is not None and loaded.get(r["adapters"].name) != route:
                params = dict(model.named_parameters())
                for n, w in weights.items():
                    params[n].data.copy_(w)
                loaded[r["adapters"].name] = route
            model.set_active_adapters(r["adapters"])
            model.active_head = r["head"]
            enc = tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
            return model(**enc).logits.float()

    for route in routes:
        forward(route, ["warm up"])

    app = FastAPI()

    @app.get("/ready")
    def ready():
        return {"status": "ready"}

    @app.post("/v1/predict/{route}")
    def predict(route: str, body: PredictBody):
        if route not in routes:
            raise HTTPException(status_code=404, detail=f"route '{route}' not found")
        logits = forward(route, body.inputs)
        labels = model.heads[routes[route]["head"]].config["label2id"]
        names = sorted(labels, key=labels.get)
        out = []
        for row in torch.softmax(logits, -1).tolist():
            best = max(range(len(row)), key=row.__getitem__)
            out.append({"label": names[best], "score": row[best], "scores": dict(zip(names, row))})
        return {"fusion": route, "predictions": out}

    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
