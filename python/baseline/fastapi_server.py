"""
A fusion served the way a Python user would write it: FastAPI + uvicorn, the backbone loaded with
transformers + `adapters`, the library's adapters and one fusion (with its head) loaded from their
AdapterHub save folders, one forward per request. The baseline of bench/serving/latency.ts.

    python python/baseline/fastapi_server.py --library models --fusion hate-fusion --port 9100

POST /v1/predict/<fusion> {"inputs": ["text", ...]} answers {"predictions": [{"label", "score"}]};
GET /health answers once the model is loaded.
"""

import argparse
import json
import logging
from pathlib import Path

import torch
import uvicorn
from adapters import AutoAdapterModel, Fuse
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel
from transformers import AutoTokenizer
from transformers import logging as hf_logging

ap = argparse.ArgumentParser()
ap.add_argument("--library", default="models")
ap.add_argument("--fusion", default="hate-fusion")
ap.add_argument("--host", default="127.0.0.1")
ap.add_argument("--port", type=int, default=9100)
ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads; 0 = torch's default (one per core)")
args = ap.parse_args()

if args.threads:
    torch.set_num_threads(args.threads)
hf_logging.set_verbosity_error()
logging.getLogger("adapters").setLevel(logging.ERROR)

library = Path(args.library)
manifest = json.loads((library / "library.json").read_text())
backbone = library / manifest["backbone"]
fusion_dir = library / "fusions" / args.fusion / manifest["fusions"][args.fusion]
names = json.loads((fusion_dir / "adapter_fusion_config.json").read_text())["adapter_names"]

tokenizer = AutoTokenizer.from_pretrained(str(backbone))
model = AutoAdapterModel.from_pretrained(str(backbone))
for name in names:
    model.load_adapter(str(library / "adapters" / name / manifest["adapters"][name]), use_safetensors=True)
model.load_adapter_fusion(str(fusion_dir), use_safetensors=True, with_head=True)
model.set_active_adapters(Fuse(*names))
model.active_head = args.fusion
model.eval()
labels = model.config.prediction_heads[args.fusion]["label2id"]
id2label = {i: label for label, i in labels.items()}

app = FastAPI()


class PredictRequest(BaseModel):
    inputs: list[str]


@app.get("/health")
def health():
    return {"status": "ok"}


@app.post("/v1/predict/{fusion}")
def predict(fusion: str, body: PredictRequest):
    if fusion != args.fusion:
        raise HTTPException(404, f"this server serves {args.fusion}")
    encoded = tokenizer(body.inputs, padding=True, truncation=True, max_length=128, return_tensors="pt")
    with torch.inference_mode():
        probabilities = model(**encoded).logits.softmax(-1)
    scores, best = probabilities.max(-1)
    return {"fusion": fusion, "predictions": [{"label": id2label[int(b)], "score": float(s)} for s, b in zip(scores, best)]}


if __name__ == "__main__":
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
