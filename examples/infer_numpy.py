"""Classify digits with a dtrain model.npz in plain NumPy (no dtrain needed).

Usage: python examples/infer_numpy.py model.npz images.npy
images.npy: uint8 pixels 0-255, shape (n, 28, 28) or (n, 784). Prints one label per line.
"""

import json
import sys

import numpy as np

f = np.load(sys.argv[1], allow_pickle=False)  # plain arrays: nothing is unpickled
meta = json.loads(str(f["metadata"]))
images = np.load(sys.argv[2], allow_pickle=False)
a = images.reshape(len(images), -1) * meta["input_scale"]  # 0-255 -> [0, 1]
L = len(meta["layer_sizes"]) - 1
for l in range(1, L + 1):
    z = a @ f[f"W{l}"] + f[f"b{l}"]
    a = z if l == L else (np.maximum(z, 0) if meta["activation"] == "relu" else 1 / (1 + np.exp(-z)))
print("\n".join(str(label) for label in a.argmax(axis=1)))  # the softmax keeps the argmax
