"""Claim 23 against real Keras: do BN's running statistics lag behind the weights early
in training, as normlab measures?

Run it in an environment of its own (TensorFlow is not a normlab dependency)::

    python -m venv /tmp/tf && /tmp/tf/bin/pip install tensorflow-cpu
    /tmp/tf/bin/python checks/keras_lag.py --model cnn --seeds 3 --out keras-lag.json

It trains the network of claim 23's quick study in Keras itself (CNN: conv 8 and 16,
3×3 same, BN, ReLU, 2×2 max-pool; MLP: the seed's 512; both then dense 512, BN, ReLU,
dropout 0.2 and softmax; Glorot uniform, Adam 1e-3, batch 128, pixels / 255, the last
5,000 training images held out) at Keras's BN momentum 0.99 and at 0.9, and at steps
100, 200, 300 and 400 measures held-out accuracy three ways, as normlab's ``bn``
probe does: with the running statistics (inference), with each batch's own statistics,
and with precise statistics (the average of 20 training batches' statistics for the
weights at hand, as ``models.statistics``). It prints a table and writes JSON; the
numbers are Keras's own and go beside normlab's in docs/STATISTICS.md.
"""

from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[1] / "src" / "normlab" / "data" / "mnist"
STEPS = (100, 200, 300, 400)
BATCH = 128
HELD_OUT = 512  # the probe's held-out images
PRECISE_BATCHES = 20


def _idx(name: str) -> np.ndarray:
    with gzip.open(DATA / name) as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * dims).reshape(shape)


def mnist() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Training images and labels without the last 5,000, and the first held-out ones."""
    x = _idx("train-images-idx3-ubyte.gz").astype(np.float32) / 255.0
    y = _idx("train-labels-idx1-ubyte.gz").astype(np.int64)
    return x[:-5000], y[:-5000], x[-5000:][:HELD_OUT], y[-5000:][:HELD_OUT]


def build(keras, model: str, momentum: float, seed: int):
    """The claim's network in Keras, BN at ``momentum`` (Keras's convention)."""
    keras.utils.set_random_seed(seed)
    layers = keras.layers
    bn = {"momentum": momentum, "epsilon": 1e-3}
    inputs = keras.Input((28, 28, 1))
    h = inputs
    if model == "cnn":
        for channels in (8, 16):
            h = layers.Conv2D(channels, 3, padding="same")(h)
            h = layers.BatchNormalization(**bn)(h)
            h = layers.ReLU()(h)
            h = layers.MaxPooling2D(2)(h)
    h = layers.Flatten()(h)
    h = layers.Dense(512)(h)
    h = layers.BatchNormalization(**bn)(h)
    h = layers.ReLU()(h)
    h = layers.Dropout(0.2)(h)
    outputs = layers.Dense(10, activation="softmax")(h)
    net = keras.Model(inputs, outputs)
    net.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    return net


def _bn_layers(keras, net):
    return [la for la in net.layers if isinstance(la, keras.layers.BatchNormalization)]


def _accuracy(net, x, y, training: bool) -> float:
    correct = 0
    for start in range(0, len(x), BATCH):
        predicted = np.argmax(net(x[start : start + BATCH], training=training), -1)
        correct += int((predicted == y[start : start + BATCH]).sum())
    return correct / len(x)


def measure(keras, net, x_train, x_held, y_held) -> dict[str, float]:
    """Held-out accuracy with running, batch and precise statistics; the running
    statistics are as they were afterwards."""
    layers = _bn_layers(keras, net)
    saved = [(la.moving_mean.numpy(), la.moving_variance.numpy(), la.momentum) for la in layers]
    out = {"running_acc": _accuracy(net, x_held, y_held, training=False)}
    # batch statistics: train-mode forward passes, dropout aside (Keras's dropout
    # follows ``training`` too, so its masks are drawn: the probe's batch statistics have
    # none, which this reads as noise of a few tenths of a point)
    out["batch_acc"] = _accuracy(net, x_held, y_held, training=True)
    # precise: a cumulative mean of the batch statistics (momentum 1 - 1/(b+1) in Keras's
    # convention), weights fixed
    for b in range(PRECISE_BATCHES):
        for la in layers:
            la.momentum = 1.0 - 1.0 / (b + 1)
        net(x_train[b * BATCH : (b + 1) * BATCH], training=True)
    out["precise_acc"] = _accuracy(net, x_held, y_held, training=False)
    for la, (mean, var, momentum) in zip(layers, saved, strict=True):
        la.moving_mean.assign(mean)
        la.moving_variance.assign(var)
        la.momentum = momentum
    return out


def train(keras, model: str, momentum: float, seed: int, data) -> list[dict[str, object]]:
    """One network trained for ``max(STEPS)`` steps, measured at each of ``STEPS``."""
    x_train, y_train, x_held, y_held = data
    net = build(keras, model, momentum, seed)
    order = np.random.default_rng(seed).permutation(len(x_train))
    rows = []
    for step in range(1, max(STEPS) + 1):
        idx = order[(step - 1) * BATCH : step * BATCH]
        net.train_on_batch(x_train[idx], y_train[idx])
        if step in STEPS:
            rows.append({"model": model, "momentum": momentum, "seed": seed, "step": step,
                         **measure(keras, net, x_train, x_held, y_held)})  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("cnn", "mlp"), default="cnn")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("keras-lag.json"))
    args = parser.parse_args()
    import keras
    import tensorflow as tf

    data = mnist()
    rows = [row for momentum in (0.99, 0.9) for seed in range(args.seeds)
            for row in train(keras, args.model, momentum, seed, data)]  # fmt: skip
    print(f"TensorFlow {tf.__version__}, Keras {keras.__version__}; {args.model}, held-out "
          f"accuracy (running / batch / precise statistics)")  # fmt: skip
    for row in rows:
        print(f"momentum {row['momentum']:<5} seed {row['seed']} step {row['step']:>3}: "
              f"{row['running_acc']:.3f} / {row['batch_acc']:.3f} / {row['precise_acc']:.3f}")
    args.out.write_text(json.dumps({"tensorflow": tf.__version__, "keras": keras.__version__,
                                    "rows": rows}, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
