"""Pull the newest SUCCEEDED job's model over dtrain's HTTP API and classify a PNG with plain NumPy.

Usage: DTRAIN_TOKEN=... python examples/classify_over_http.py http://HEAD:8270 digit.png
(the digit light on dark, as in MNIST; any size, it is scaled to 28 x 28)
"""
import io, json, os, sys, urllib.request

import numpy as np
from PIL import Image

get = lambda path: urllib.request.urlopen(urllib.request.Request(  # noqa: E731
    f"{sys.argv[1]}/api/v1{path}", headers={"Authorization": "Bearer " + os.environ["DTRAIN_TOKEN"]})).read()
job = [j for j in json.loads(get("/jobs")) if j["state"] == "SUCCEEDED"][-1]
f = np.load(io.BytesIO(get(f"/jobs/{job['id']}/artifacts/model.npz")), allow_pickle=False)
meta = json.loads(str(f["metadata"]))
L = len(meta["layer_sizes"]) - 1
a = np.asarray(Image.open(sys.argv[2]).convert("L").resize((28, 28)), np.float32).reshape(1, -1) * meta["input_scale"]
for l in range(1, L + 1):
    z = a @ f[f"W{l}"] + f[f"b{l}"]
    a = z if l == L else (np.maximum(z, 0) if meta["activation"] == "relu" else 1 / (1 + np.exp(-z)))
print(f"job {job['id']}: {int(a.argmax())}")
