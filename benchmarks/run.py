"""normlab's performance benchmark: every figure of BENCHMARKS.md from one run.

Seed network (784-512-10, ReLU, dropout 0.2, BN before the ReLU or none), raw pixels,
Keras-semantics Adam, real MNIST (55,000 training images, validation 5,000 and test
10,000 evaluated after every epoch). Sections:

  floor     the step's matmuls (forward; weight gradients; input gradient of layer 2 only)
            and one fused Adam update of the stacked parameters, K=16, each timed alone
  baselines a plain PyTorch loop: one model, in memory, denormal flush, fused Adam,
            F.dropout, the same evaluation every epoch; Keras fit when TensorFlow imports
  stack     normlab, K=16 (on a GPU also without the CUDA graph): seconds per
            model-epoch (median of the epochs after the first), evaluation share of the
            epoch, ratio to floor
  step      (CPU) a K=16 step at B=32 and 256, BN and none: ms per step of the direct step
            (no autograd; the input layer's gradient, Adam and next forward in one sweep)
            and of the autograd step it replaces, against the floor's ms per step
  func      torch.func ensembling (stack_module_state + functional_call + vmap) of 16 seed
            networks beside normlab's K=16, B=32 and 256, BN and none: seconds per
            model-epoch, evaluation included
  reproduce `normlab reproduce --seeds 5` end to end (a fresh process and database), with
            its floor and the final test accuracies
  curves    seconds per model-epoch of training steps for K = 1..32 and widths 128-2048
  cnn       the CNN family (conv 32, 64 -> dense 128, BN), scaled inputs: seconds per
            model-epoch of training steps for stacks of K = 1, 4, 8, a plain one-model
            PyTorch loop of the same CNN (NCHW as written, and channels-last) and
            torch.func ensembling (stack_module_state + vmap) of 8, at B = 32 and 256
  memory    peak RSS after the K=16 section; `normlab --help` wall time

Usage: python benchmarks/run.py [--quick] [--device cuda] [--out benchmarks/results.json]
Timings on a shared machine are noisy: compare ratios taken within one run.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.adam import adam as adam_kernel

from normlab import runtime
from normlab.analysis.summary import summarize
from normlab.app.api import plan_study, reproduce_studies
from normlab.data.locate import load
from normlab.data.prepare import Split, Splits, prepare
from normlab.experiments.plan import stack_size
from normlab.models.mlp.spec import MLPSpec
from normlab.models.mlp.stack import StackedMLP
from normlab.spec.config import RunConfig
from normlab.store.db import Store
from normlab.train.loop import Schedule, train_stack
from normlab.train.optim import Adam, Rates
from normlab.train.optimizers import make_optimizer
from normlab.train.step import StepState, train_step

BATCHES = (32, 64, 128, 256)
K = 16
N_TRAIN = 55000


def _median_time(fn, reps: int, device: torch.device) -> float:
    fn()
    times = []
    for _ in range(reps):
        runtime.synchronize(device)
        t = time.perf_counter()
        fn()
        runtime.synchronize(device)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def floor(batch: int, device: torch.device, k: int = K, width: int = 512, reps: int = 30) -> dict:
    """Seconds per model-epoch of the matmuls and of the Adam update, timed in isolation:
    the fastest of three rounds (fresh tensors each), each the median of ``reps``. One
    round's median varied by up to 40% between runs on a shared machine (AMD EPYC,
    issue 13), and a floor must not be raised by a slow round."""
    rounds = [_floor_round(batch, device, k, width, reps) for _ in range(3)]
    return min(rounds, key=lambda r: r["floor"])


def _floor_round(batch: int, device: torch.device, k: int, width: int, reps: int) -> dict:
    x = (torch.rand(k, batch, 784, device=device) * 255).floor()
    w1 = torch.randn(k, 784, width, device=device) * 0.05
    h, w2 = torch.rand(k, batch, width, device=device), torch.randn(k, width, 10, device=device)
    b1, b2 = torch.zeros(k, 1, width, device=device), torch.zeros(k, 1, 10, device=device)
    g_h = torch.randn(k, batch, width, device=device)
    g_out = torch.randn(k, batch, 10, device=device)

    def matmuls() -> None:
        torch.baddbmm(b1, x, w1)
        torch.baddbmm(b2, h, w2)
        torch.bmm(x.transpose(1, 2), g_h)
        torch.bmm(h.transpose(1, 2), g_out)
        torch.bmm(g_out, w2.transpose(1, 2))

    shapes = [(k, 784, width), (k, width), (k, width, 10), (k, 10)]
    params = [torch.randn(shape, device=device) for shape in shapes]
    grads = [torch.randn_like(p) for p in params]
    m, v = [torch.zeros_like(p) for p in params], [torch.zeros_like(p) for p in params]
    steps = [torch.zeros((), device=device) for _ in params]

    def adam() -> None:
        adam_kernel(params, grads, m, v, [], steps, fused=True, amsgrad=False, beta1=0.9,
                    beta2=0.999, lr=1e-3, weight_decay=0.0, eps=1e-7, maximize=False)  # fmt: skip

    per_epoch = (N_TRAIN // batch) / k
    mm = _median_time(matmuls, reps, device) * per_epoch
    ad = _median_time(adam, reps, device) * per_epoch
    return {"matmul": mm, "adam": ad, "floor": mm + ad}


def plain_loop(splits, batch: int, epochs: int) -> float:
    """Median seconds per epoch of a textbook in-memory PyTorch loop on one model."""
    torch.manual_seed(0)
    device = splits.train.x.device
    model = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Dropout(0.2), nn.Linear(512, 10))
    model.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7, fused=True)
    x, y = splits.train.x, splits.train.y
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        model.train()
        perm = torch.randperm(len(y), device=device)
        for i in range(len(y) // batch):
            idx = perm[i * batch : (i + 1) * batch]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            for split in (splits.val, splits.test):
                F.cross_entropy(logits := model(split.x), split.y)
                (logits.argmax(1) == split.y).float().mean().item()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:] if len(times) > 1 else times)


def keras_fit(splits, batch: int, norm: str, epochs: int) -> float | None:
    """Median seconds per epoch of the seed's Keras model and ``fit``; None without TF."""
    try:
        import keras  # optional: TensorFlow is not a dependency
    except ImportError:
        return None
    layers = [keras.layers.Input((784,)), keras.layers.Dense(512)]
    layers += [keras.layers.BatchNormalization()] if norm == "batch" else []
    layers += [keras.layers.Activation("relu"), keras.layers.Dropout(0.2), keras.layers.Dense(10)]
    model = keras.Sequential(layers)
    model.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(True))
    x, y = splits.train.x.numpy(), splits.train.y.numpy()
    val = (splits.val.x.numpy(), splits.val.y.numpy())
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        model.fit(x, y, batch_size=batch, epochs=1, validation_data=val, verbose=0)
        model.evaluate(splits.test.x.numpy(), splits.test.y.numpy(), verbose=0)
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:] if len(times) > 1 else times)


def stack(splits, batch: int, norm: str, epochs: int, cuda_graph: bool = True) -> dict:
    """normlab's seconds per model-epoch at K=16 (median after the first epoch)."""
    spec = MLPSpec(784, (512,), 10, norm=norm, dropout=0.2)
    seeds = list(range(K))
    model = StackedMLP(spec, seeds).to(splits.train.x.device)
    opt = Adam(eps=1e-7, eps_before_bias_correction=True)
    results = train_stack(model, opt, splits, seeds, [1e-3] * K, Schedule(batch, epochs),
                          cuda_graph=cuda_graph)  # fmt: skip
    steady = results[0].epochs[1:] or results[0].epochs
    seconds = statistics.median(e.seconds for e in steady)
    eval_seconds = statistics.median(e.eval_seconds for e in steady)
    return {"seconds": seconds, "eval_share": eval_seconds / seconds,
            "test_acc": statistics.mean(r.epochs[-1].test_acc for r in results)}  # fmt: skip


def curve_point(splits, k: int, width: int, batch: int = 128, steps: int = 40) -> float:
    """Seconds per model-epoch of training steps alone (no evaluation) for a stack of k."""
    spec = MLPSpec(784, (width,), 10, norm="batch", dropout=0.2)
    seeds = list(range(k))
    model = StackedMLP(spec, seeds).to(splits.train.x.device)
    x, y = splits.train.x[: steps * batch], splits.train.y[: steps * batch]
    tiny = Splits(Split(x, y), Split(x[:0], y[:0]), Split(x[:batch], y[:batch]), "raw", 10)
    return _steps_seconds(model, Adam(eps=1e-7, eps_before_bias_correction=True), tiny, batch)


def _steps_seconds(model, opt, splits, batch: int) -> float:
    """Seconds per model-epoch of ``model``'s training steps on ``splits`` (an epoch of
    them after one warm-up epoch), scaled to a full MNIST epoch."""
    seeds = list(range(model.k))
    train_stack(model, opt, splits, seeds, [1e-3] * model.k, Schedule(batch, 1))
    runtime.synchronize(splits.train.x.device)
    start = time.perf_counter()
    train_stack(model, opt, splits, seeds, [1e-3] * model.k, Schedule(batch, 1))
    runtime.synchronize(splits.train.x.device)
    per_step = (time.perf_counter() - start) / (len(splits.train) // batch)
    return per_step * (N_TRAIN // batch) / model.k


def step_ms(splits, batch: int, norm: str, direct_step: bool, steps: int) -> float:
    """Milliseconds per K=16 training step of the seed network: the CPU's direct step
    (``train.direct``: no autograd, the input layer's fused sweep) or the autograd step
    it replaces; the fastest of three rounds' means, after warm-up steps."""
    spec = MLPSpec(784, (512,), 10, norm=norm, dropout=0.2)
    model = StackedMLP(spec, list(range(K))).train()
    state = StepState.create(K, len(splits.train), batch, list(range(K)), torch.device("cpu"))
    state.direct = None if direct_step else False
    state.start_epoch(torch.stack([torch.randperm(len(splits.train)) for _ in range(K)]))
    opt = Adam(eps=1e-7, eps_before_bias_correction=True)
    opt_state = [opt.init([p.detach() for p in model.parameters()])]
    data, rates = (splits.train.x, splits.train.y), Rates.of([1e-3] * K)

    def steps_of(n: int) -> None:
        for _ in range(n):
            train_step(model, opt, opt_state, state, data, rates)

    steps_of(5)
    rounds = []
    for _ in range(3):
        start = time.perf_counter()
        steps_of(steps)
        rounds.append((time.perf_counter() - start) / steps * 1e3)
    return min(rounds)


def func_mlp(splits, batch: int, norm: str, epochs: int, k: int = K) -> float:
    """What a savvy PyTorch user writes instead of normlab: ``torch.func`` ensembling of
    k seed networks (``stack_module_state`` + ``functional_call`` + ``vmap``, dropout
    "different" per model), fused Adam over the stacked parameters, the data in memory,
    each model its own data order, validation and test evaluated every epoch. Seconds per
    model-epoch (median of the epochs after the first), as ``stack`` reports."""
    from torch.func import functional_call, stack_module_state, vmap

    torch.manual_seed(0)
    layers = [nn.Linear(784, 512)] + ([nn.BatchNorm1d(512)] if norm == "batch" else [])
    models = [nn.Sequential(*layers, nn.ReLU(), nn.Dropout(0.2), nn.Linear(512, 10))]
    models += [copy.deepcopy(models[0]) for _ in range(k - 1)]
    for m in models:
        for p in m.parameters():
            nn.init.normal_(p, std=0.05) if p.dim() > 1 else nn.init.zeros_(p)
    params, buffers = stack_module_state(models)
    base = copy.deepcopy(models[0]).to("meta")
    opt = torch.optim.Adam(list(params.values()), 1e-3, eps=1e-7, fused=True)
    x, y = splits.train.x, splits.train.y

    def loss(p, b, xs, ys):
        return F.cross_entropy(functional_call(base, (p, b), (xs,)), ys)

    train_losses = vmap(loss, randomness="different")
    held_out = vmap(lambda p, b, xs: functional_call(base, (p, b), (xs,)), in_dims=(0, 0, None))
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        base.train()
        order = torch.stack([torch.randperm(len(y)) for _ in range(k)])
        for i in range(len(y) // batch):
            idx = order[:, i * batch : (i + 1) * batch]
            opt.zero_grad()
            train_losses(params, buffers, x[idx], y[idx]).sum().backward()
            opt.step()
        base.eval()
        with torch.no_grad():
            for split in (splits.val, splits.test):
                for rows in range(0, len(split), 2500):
                    logits = held_out(params, buffers, split.x[rows : rows + 2500])
                    (logits.argmax(-1) == split.y[rows : rows + 2500]).sum(1)
        times.append((time.perf_counter() - start) / k)
    return statistics.median(times[1:] if len(times) > 1 else times)


def reproduce(db: Path, data_dir: str | None, device: torch.device, executor: str) -> dict:
    """Wall time of `normlab reproduce --seeds 5 --executor E` in a fresh process, its
    accuracies, and what the dry run's measured estimate (`api.plan_study`) said."""
    study = reproduce_studies(seeds=5)[0]
    begun = time.perf_counter()
    plan = plan_study(study, db=db, device=str(device), data_dir=data_dir, executor=executor)
    estimating = time.perf_counter() - begun
    cmd = [sys.executable, "-m", "normlab", "reproduce", "--seeds", "5", "--db", str(db)]
    cmd += ["--device", str(device), "--executor", executor]
    if data_dir:
        cmd += ["--data-dir", data_dir]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    store = Store(db)
    name = "reproduce-raw-keras-5ep-5seeds-b32-64-128-256"
    groups = summarize(store, name, ["norm", "batch_size"]).groups
    store.close()
    acc = {f"{g.factors['norm']}@{g.factors['batch_size']}": g.test_acc.mean for g in groups}
    estimate = plan.estimate.seconds if plan.estimate else None
    return {"seconds": wall, "test_acc": acc, "estimate": estimate, "estimating": estimating}


def help_seconds() -> float:
    cmd = [sys.executable, "-m", "normlab", "--help"]
    run = lambda: subprocess.run(cmd, check=True, capture_output=True)  # noqa: E731
    return _median_time(run, 3, torch.device("cpu"))


def report(db: Path, budget: str) -> dict:
    """``normlab report --claims`` on ``db`` as a fresh process: wall seconds (median of
    3, start-up included) and the page's size."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "r.html"
        cmd = [sys.executable, "-m", "normlab", "report", "--claims", "--budget", budget,
               "--db", str(db), "--out", str(out)]  # fmt: skip
        run = lambda: subprocess.run(cmd, check=True, capture_output=True)  # noqa: E731
        seconds = _median_time(run, 3, torch.device("cpu"))
        return {"seconds": seconds, "mb": out.stat().st_size / 1e6, "budget": budget}


CNN_BATCHES = (32, 256)
CNN_KS = (1, 4, 8)


def plain_cnn() -> nn.Sequential:
    """The CNN family's network as one plain PyTorch model (conv 32, 64 -> dense 128)."""
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(3136, 128), nn.BatchNorm1d(128), nn.ReLU(), nn.Dropout(0.2),
        nn.Linear(128, 10),
    )  # fmt: skip


def _per_model_epoch(step, steps: int, batch: int, models: int, device) -> float:
    """Seconds per model-epoch of ``step`` (one training step of ``models`` models), the
    median of ``steps`` timed after three warm-up steps."""
    for _ in range(3):
        step()
    return _median_time(step, steps, device) * (N_TRAIN // batch) / models


def plain_cnn_loop(splits, batch: int, steps: int, channels_last: bool) -> float:
    """One model, the data in memory, fused Adam: a careful plain loop."""
    torch.manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    device = splits.train.x.device
    model = plain_cnn().to(device, memory_format=fmt)
    opt = torch.optim.Adam(model.parameters(), 1e-3, fused=True)
    x, y = splits.train.x.view(-1, 1, 28, 28), splits.train.y

    def step() -> None:
        idx = torch.randint(0, len(y), (batch,), device=device)
        loss = F.cross_entropy(model(x[idx].contiguous(memory_format=fmt)), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()

    return _per_model_epoch(step, steps, batch, 1, device)


def func_cnn(splits, batch: int, steps: int, k: int = 8) -> float:
    """torch.func model ensembling: k plain CNNs' parameters stacked, vmap over them."""
    from torch.func import functional_call, stack_module_state, vmap

    torch.manual_seed(0)
    device = splits.train.x.device
    models = [plain_cnn().to(device) for _ in range(k)]
    params, buffers = stack_module_state(models)
    base = copy.deepcopy(models[0]).to("meta")
    opt = torch.optim.Adam(list(params.values()), 1e-3, fused=True)
    x, y = splits.train.x.view(-1, 1, 28, 28), splits.train.y

    def loss(p, b, xs, ys):
        return F.cross_entropy(functional_call(base, (p, b), (xs,)), ys)

    losses = vmap(loss, randomness="different")

    def step() -> None:
        idx = torch.randint(0, len(y), (k, batch), device=device)
        opt.zero_grad()
        losses(params, buffers, x[idx], y[idx]).sum().backward()
        opt.step()

    return _per_model_epoch(step, steps, batch, k, device)


def cnn_stack(splits, batch: int, steps: int, k: int) -> float:
    """normlab's stacked CNN of k members: training steps only."""
    config = RunConfig(model="cnn", hidden=(128,), norm="batch", inputs="scaled")
    model = config.family.build(config.model_spec(), list(range(k))).to(splits.train.x.device)
    n = steps * batch
    x, y = splits.train.x[:n], splits.train.y[:n]
    tiny = Splits(Split(x, y), Split(x[:0], y[:0]), Split(x[:batch], y[:batch]), "scaled", 10)
    return _steps_seconds(model, make_optimizer(config), tiny, batch)


def cnn_section(splits, batch: int, steps: int) -> dict[str, float]:
    """Seconds per model-epoch of every CNN variant at one batch size."""
    out = {
        "plain": plain_cnn_loop(splits, batch, steps, channels_last=False),
        "plain channels-last": plain_cnn_loop(splits, batch, steps, channels_last=True),
        "torch.func K=8": func_cnn(splits, batch, steps),
    }
    for k in CNN_KS:
        out[f"normlab K={k}"] = cnn_stack(splits, batch, steps, k)
    return out


SECTIONS = ("baselines", "stack", "step", "func", "reproduce", "curves", "cnn", "report")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 timed epoch, fewer points")
    parser.add_argument("--sections", default=",".join(SECTIONS), help="comma-separated subset")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("results.json"))
    parser.add_argument("--report-db", type=Path, default=None,
                        help="a claims database: time `normlab report --claims` on it")  # fmt: skip
    parser.add_argument("--report-budget", default="standard")
    args = parser.parse_args()
    sections = set(args.sections.split(","))
    if sections - set(SECTIONS):
        parser.error(f"--sections: unknown {sorted(sections - set(SECTIONS))}; use {SECTIONS}")
    epochs = 2 if args.quick else 3  # the first epoch is warm-up; median of the rest
    device = runtime.resolve_device(args.device)
    runtime.configure()
    splits = prepare(load("mnist", args.data_dir), "raw", device=device)
    out: dict = {"environment": runtime.environment(device), "quick": args.quick}
    out["load_average_start"] = os.getloadavg()

    def save() -> None:  # after every section: a crash late in a long run loses nothing
        args.out.write_text(json.dumps(out, indent=2))

    print("## floor (K=16), seconds per model-epoch", flush=True)
    out["floor"] = {b: floor(b, device) for b in BATCHES}
    for b, f in out["floor"].items():
        print(f"B={b:<4} floor {f['floor']:.3f} (matmul {f['matmul']:.3f} + adam "
              f"{f['adam']:.3f})", flush=True)  # fmt: skip
    if "baselines" in sections:
        print("## baselines, seconds per model-epoch", flush=True)
        out["plain"], out["keras"] = {}, {}
        for b in BATCHES:
            out["plain"][b] = plain_loop(splits, b, epochs)
            out["keras"][b] = {n: keras_fit(splits, b, n, epochs) for n in ("none", "batch")}
            print(f"B={b:<4} plain PyTorch {out['plain'][b]:.3f}", flush=True)
        save()

    if "stack" in sections:
        print("## normlab K=16", flush=True)
        out["stack"] = {}
        variants = ["fp32"] + (["fp32-eager"] if device.type == "cuda" else [])
        for variant in variants:  # eager: what capturing the step as a CUDA graph buys
            for b in BATCHES:
                for norm in ("none", "batch"):
                    r = stack(splits, b, norm, epochs, not variant.endswith("-eager"))
                    r["vs_floor"] = r["seconds"] / out["floor"][b]["floor"]
                    out["stack"][f"{variant}/{norm}/{b}"] = r
                    print(f"{variant} {norm:<5} B={b:<4} {r['seconds']:.3f} s/model-epoch  "
                          f"{r['vs_floor']:.2f}x floor  eval {100 * r['eval_share']:.1f}%",
                          flush=True)  # fmt: skip
        out["peak_rss_mb_after_k16"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        if device.type == "cuda":
            out["peak_gpu_mb_after_k16"] = torch.cuda.max_memory_allocated(device) / 2**20
        save()

    if "step" in sections and device.type == "cpu":
        print("## a K=16 step, ms: the direct step and the autograd step against the floor",
              flush=True)  # fmt: skip
        out["step"] = {}
        for b in (32, 256):
            for norm in ("none", "batch"):
                steps = 40 if args.quick or b == 256 else 150
                floor_ms = out["floor"][b]["floor"] * K / (N_TRAIN // b) * 1e3
                r = {"floor": floor_ms}
                for name, on in (("autograd", False), ("direct", True)):
                    r[name] = step_ms(splits, b, norm, on, steps)
                out["step"][f"{norm}/{b}"] = r
                print(f"{norm:<5} B={b:<4} direct {r['direct']:.2f} ({r['direct'] / floor_ms:.2f}x "
                      f"floor)  autograd {r['autograd']:.2f} ({r['autograd'] / floor_ms:.2f}x)  "
                      f"floor {floor_ms:.2f}", flush=True)  # fmt: skip
        save()

    if "func" in sections:
        print("## torch.func ensembling of 16 against normlab's K=16, s/model-epoch with "
              "evaluation", flush=True)  # fmt: skip
        out["func"] = {}
        for b in (32, 256):
            for norm in ("none", "batch"):
                ours = stack(splits, b, norm, epochs)["seconds"]
                theirs = func_mlp(splits, b, norm, epochs)
                out["func"][f"{norm}/{b}"] = {"normlab": ours, "torch.func": theirs}
                print(f"{norm:<5} B={b:<4} normlab {ours:.3f}  torch.func {theirs:.3f}  "
                      f"normlab {theirs / ours:.2f}x faster", flush=True)  # fmt: skip
        save()

    if "reproduce" in sections:
        out["reproduce_floor"] = 5 * 5 * 2 * sum(out["floor"][b]["floor"] for b in BATCHES)
        for executor in ("local", "pool"):  # pool: 1-thread units at once, one per core
            print(f"## normlab reproduce --seeds 5 --executor {executor}", flush=True)
            with tempfile.TemporaryDirectory() as tmp:
                r = reproduce(Path(tmp) / "r.db", args.data_dir, device, executor)
            out["reproduce" if executor == "local" else f"reproduce_{executor}"] = r
            print(f"{r['seconds']:.1f} s, floor {out['reproduce_floor']:.1f} s, dry-run "
                  f"estimate {r['estimate']:.1f} s (measured in {r['estimating']:.1f} s)",
                  flush=True)  # fmt: skip
            save()

    if "curves" in sections:
        print("## cost curves (B=128, BN), seconds per model-epoch of training steps", flush=True)
        out["curves"] = {}
        ks = (1, 4, 16) if args.quick else (1, 2, 4, 8, 16, 32)
        for width in (128, 512, 2048):
            for k in ks:
                out["curves"][f"{width}/{k}"] = curve_point(splits, k, width)
            row = "  ".join(f"K={k} {out['curves'][f'{width}/{k}']:.3f}" for k in ks)
            auto = stack_size(RunConfig(hidden=(width,), batch_size=128), 64,
                              device_type=device.type)  # fmt: skip
            print(f"width {width:<5} {row}  auto K={auto}", flush=True)
        save()
    if "cnn" in sections:
        print("## CNN (conv 32-64, dense 128, BN), seconds per model-epoch of training "
              "steps", flush=True)  # fmt: skip
        scaled = prepare(load("mnist", args.data_dir), "scaled", device=device)
        out["cnn"] = {b: cnn_section(scaled, b, 4 if args.quick else 20) for b in CNN_BATCHES}
        for b, r in out["cnn"].items():
            print(f"B={b:<4} " + "  ".join(f"{name} {v:.2f}" for name, v in r.items()), flush=True)
        save()
    if "report" in sections:
        print(f"## normlab report --claims --budget {args.report_budget}", flush=True)
        if args.report_db is None:
            print("skipped: --report-db names no claims database", flush=True)
        else:
            out["report"] = report(args.report_db, args.report_budget)
            print(f"{out['report']['seconds']:.1f} s, {out['report']['mb']:.1f} MB", flush=True)
            save()
    out["help_seconds"] = help_seconds()
    out["load_average_end"] = os.getloadavg()
    save()
    print()
    print(render(out))
    print(f"wrote {args.out}")


def _fmt(v: float | None, spec: str = ".3f") -> str:
    return "—" if v is None else format(v, spec)


def render(out: dict) -> str:
    """The run's figures as one markdown table (seconds per model-epoch unless noted)."""
    rows = ["| figure | " + " | ".join(f"B={b}" for b in BATCHES) + " |"]
    rows.append("|---|" + "---|" * len(BATCHES))

    def row(name: str, cells: list[str]) -> None:
        rows.append(f"| {name} | " + " | ".join(cells) + " |")

    fl = out["floor"]
    row("floor K=16: matmul + Adam", [
        f"{fl[b]['floor']:.3f} ({fl[b]['matmul']:.3f} + {fl[b]['adam']:.3f})" for b in BATCHES
    ])  # fmt: skip
    if "plain" in out:
        for norm in ("none", "batch"):
            row(f"Keras fit, {norm}", [_fmt(out["keras"][b][norm]) for b in BATCHES])
        row("plain PyTorch loop (none)", [_fmt(out["plain"][b]) for b in BATCHES])
    stack = out.get("stack", {})
    for variant in ("fp32", "fp32-eager") if stack else ():
        for norm in ("none", "batch"):
            cells = [stack.get(f"{variant}/{norm}/{b}") for b in BATCHES]
            if not any(cells):
                continue
            row(f"normlab K=16 {variant} {norm} (× floor)", [
                f"{c['seconds']:.3f} ({c['vs_floor']:.2f}×)" if c else "—" for c in cells
            ])  # fmt: skip
    for norm in ("none", "batch") if stack else ():
        cells = [stack[f"fp32/{norm}/{b}"] for b in BATCHES]
        row(f"evaluation share of the epoch, fp32 {norm}",
            [f"{100 * c['eval_share']:.1f}%" for c in cells])  # fmt: skip
    lines = ["\n".join(rows), ""]
    for key, executor in (("reproduce", "local"), ("reproduce_pool", "pool")):
        if key not in out:
            continue
        r, f, e = out[key]["seconds"], out["reproduce_floor"], out[key].get("estimate")
        lines.append(f"normlab reproduce --seeds 5 --executor {executor}: {r:.1f} s "
                     f"({r / f:.2f}× its floor, {f:.1f} s)")  # fmt: skip
        if e:
            lines.append(f"  its dry-run estimate: {e:.1f} s ({e / r:.2f}× what it took)")
        acc = out[key]["test_acc"]
        lines.append("  final test accuracy: " + ", ".join(f"{k} {v:.4f}" for k, v in acc.items()))
    if "curves" in out:
        ks = sorted({int(key.split("/")[1]) for key in out["curves"]})
        lines.append("cost curves, B=128, BN, training steps only (s/model-epoch):")
        for width in (128, 512, 2048):
            lines.append(f"  width {width:<5}" + "".join(
                f"  K={k}: {out['curves'][f'{width}/{k}']:.3f}" for k in ks
            ))  # fmt: skip
    if "step" in out:
        lines.append("a K=16 step, ms (× the floor's ms per step): direct | autograd")
        for key, r in out["step"].items():
            f, d, a = r["floor"], r["direct"], r["autograd"]
            lines.append(f"  {key:<10} {d:.2f} ({d / f:.2f}×) | {a:.2f} ({a / f:.2f}×), "
                         f"floor {f:.2f}")  # fmt: skip
    if "func" in out:
        lines.append("torch.func ensemble of 16 vs normlab K=16, s/model-epoch with evaluation:")
        for key, r in out["func"].items():
            ours, theirs = r["normlab"], r["torch.func"]
            lines.append(f"  {key:<10} normlab {ours:.3f}, torch.func {theirs:.3f}: normlab "
                         f"{theirs / ours:.2f}× faster")  # fmt: skip
    if "cnn" in out:
        lines.append("CNN (conv 32-64, dense 128, BN), training steps, s/model-epoch:")
        for b, r in out["cnn"].items():
            plain = r["plain"]
            lines.append(f"  B={b:<4}" + "".join(
                f"  {name} {v:.2f}" + (f" ({plain / v:.2f}× plain)" if "normlab" in name else "")
                for name, v in r.items()
            ))  # fmt: skip
    if "peak_rss_mb_after_k16" in out:
        lines.append(f"peak RSS after the K=16 runs: {out['peak_rss_mb_after_k16']:.0f} MB")
    if "peak_gpu_mb_after_k16" in out:
        lines.append(f"peak GPU memory after the K=16 runs: {out['peak_gpu_mb_after_k16']:.0f} MB")
    if "report" in out:
        r = out["report"]
        lines.append(f"normlab report --claims --budget {r['budget']}: {r['seconds']:.1f} s, "
                     f"{r['mb']:.1f} MB")  # fmt: skip
    lines.append(f"normlab --help: {out['help_seconds']:.2f} s")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
