"""Talks to the server as a KServe or Triton user would: with tritonclient's HTTP client.

Usage: client.py URL MODEL TEXT... ; prints one JSON object with what the client saw.
"""
import json
import sys

import numpy as np
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException


def main() -> None:
    url, model, *texts = sys.argv[1:]
    client = httpclient.InferenceServerClient(url=url.removeprefix("http://"))
    seen = {
        "live": client.is_server_live(),
        "ready": client.is_server_ready(),
        "model_ready": client.is_model_ready(model),
        "metadata": client.get_model_metadata(model),
    }
    for binary in (True, False):
        text = httpclient.InferInput("text", [len(texts)], "BYTES")
        text.set_data_from_numpy(np.array([t.encode() for t in texts], dtype=np.object_), binary_data=binary)
        outputs = [httpclient.InferRequestedOutput(name, binary_data=binary) for name in ("probabilities", "label", "fusion_weights")]
        result = client.infer(model, [text], outputs=outputs)
        key = "binary" if binary else "json"
        seen[key] = {
            "probabilities": result.as_numpy("probabilities").astype(float).tolist(),
            "label": [v.decode() if isinstance(v, bytes) else str(v) for v in result.as_numpy("label").tolist()],
            "fusion_weights_shape": list(result.as_numpy("fusion_weights").shape),
        }
    # No outputs named: the client asks for every default output in binary.
    text = httpclient.InferInput("text", [len(texts)], "BYTES")
    text.set_data_from_numpy(np.array([t.encode() for t in texts], dtype=np.object_))
    seen["defaults"] = client.infer(model, [text]).as_numpy("probabilities").astype(float).tolist()
    try:
        client.get_model_metadata("no-such-route")
        seen["unknown"] = None
    except InferenceServerException as err:
        seen["unknown"] = {"status": err.status(), "message": err.message()}
    print(json.dumps(seen))


if __name__ == "__main__":
    main()
