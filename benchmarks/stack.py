"""Seconds per model-epoch: normlab's stack of K members vs a plain one-model PyTorch loop.

Seed network (784-512-10, ReLU, dropout 0.2), raw pixels, Adam, fp32, real MNIST
(55,000 training images after the validation split). The stack rows time whole epochs
of ``train_stack`` including its per-epoch evaluation of validation and test sets; the
plain loop is ``nn.Sequential`` + ``torch.optim.Adam`` over in-memory tensors with
per-step evaluation-free training, plus the same evaluation once per epoch.

Usage: python benchmarks/stack.py [--epochs 1] [--out benchmarks/stack.json]
Prints a table and writes the JSON. Timings on a shared machine are noisy: compare
ratios within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch
from torch import nn

# normlab's imports flush denormals; they come before any torch op runs.
from normlab import runtime
from normlab.data.locate import load
from normlab.data.prepare import prepare
from normlab.models.stack import MLPSpec, StackedMLP
from normlab.train.loop import train_stack
from normlab.train.optim import Adam


def plain_loop(splits, batch: int, epochs: int) -> float:
    """Seconds per epoch of a textbook in-memory PyTorch loop on one model."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Dropout(0.2), nn.Linear(512, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7, fused=True)
    x, y = splits.train.x, splits.train.y
    start = time.perf_counter()
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(len(y))
        for i in range(len(y) // batch):
            idx = perm[i * batch : (i + 1) * batch]
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            for split in (splits.val, splits.test):
                (model(split.x).argmax(1) == split.y).float().mean()
    return (time.perf_counter() - start) / epochs


def stacked(splits, batch: int, k: int, epochs: int, norm: str) -> float:
    """Seconds per model-epoch of a stack of ``k`` members."""
    spec = MLPSpec(784, (512,), 10, norm=norm, dropout=0.2)
    seeds = list(range(k))
    model = StackedMLP(spec, seeds)
    opt = Adam(eps=1e-7, eps_before_bias_correction=True)
    start = time.perf_counter()
    train_stack(model, opt, splits, seeds=seeds, lrs=[1e-3] * k, batch_size=batch, epochs=epochs)
    return (time.perf_counter() - start) / (epochs * k)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-sizes", default="32,256")
    parser.add_argument("--stacks", default="1,4,8,16")
    parser.add_argument("--norms", default="none,batch")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("stack.json"))
    args = parser.parse_args()
    splits = prepare(load("mnist", args.data_dir), "raw")
    rows = []
    print(f"{'batch':>5} {'approach':<22} {'norm':<6} {'s/model-epoch':>13} {'vs plain':>9}")
    for batch in map(int, args.batch_sizes.split(",")):
        base = plain_loop(splits, batch, args.epochs)
        rows.append(
            {
                "batch": batch,
                "approach": "plain PyTorch loop",
                "k": 1,
                "norm": "none",
                "seconds_per_model_epoch": base,
            }
        )
        print(f"{batch:>5} {'plain PyTorch loop':<22} {'none':<6} {base:>13.3f} {1.0:>8.2f}x")
        for norm in args.norms.split(","):
            for k in map(int, args.stacks.split(",")):
                s = stacked(splits, batch, k, args.epochs, norm)
                rows.append(
                    {
                        "batch": batch,
                        "approach": f"normlab stack K={k}",
                        "k": k,
                        "norm": norm,
                        "seconds_per_model_epoch": s,
                    }
                )
                print(
                    f"{batch:>5} {f'normlab stack K={k}':<22} {norm:<6} {s:>13.3f} "
                    f"{base / s:>8.2f}x"
                )
    result = {
        "benchmark": "stack",
        "network": "784-512-10 relu dropout 0.2, raw pixels, Adam, fp32",
        "epochs_timed": args.epochs,
        "environment": runtime.environment(torch.device("cpu")),
        "load_average": os.getloadavg(),
        "machine": platform.node(),
        "rows": rows,
    }
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
