"""Real data-parallel training with ``torch.distributed``: workers, the launcher, ``torchrun`` (lab 09, section 7).

:func:`run_ddp` starts ``world_size`` worker **processes** on this machine (``spawn``, which works
on Linux, macOS and Windows) with the ``gloo`` backend. They meet through a ``FileStore`` in a
temporary folder, so no network port has to be free. Each worker trains the same small MLP on its
own shard of Fashion-MNIST under ``DistributedDataParallel``, once per communication scheme
(:mod:`qlearn.bridge.ddp_hooks`), and reports the test loss and accuracy along the way and the
bytes it sent. Every scheme starts from the same weights and sees the same batches, so the curves
differ only by what the communication did to the gradients.

Nothing hangs: the launcher waits at most ``timeout`` seconds, a worker that raises stops the
others and its traceback is re-raised in the caller, and every collective has a timeout.

Across machines, the same training runs under ``torchrun`` (each machine runs one command)::

    torchrun --nnodes 2 --nproc-per-node 1 --node-rank 0 --master-addr 10.0.0.1 --master-port 29500 \\
        -m qlearn.bridge.ddp_worker --steps 100      # on the first machine (10.0.0.1)
    torchrun --nnodes 2 --nproc-per-node 1 --node-rank 1 --master-addr 10.0.0.1 --master-port 29500 \\
        -m qlearn.bridge.ddp_worker --steps 100      # on the second one
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

__all__ = ["DEFAULTS", "main", "run_ddp", "train_in_process", "train_schemes", "worker"]

#: The training run of lab 09: a 784-64-10 MLP, batches of 32 images per worker, plain SGD, 100 steps.
DEFAULTS: dict = {
    "schemes": ["allreduce", "fp16", "powersgd", "int8"],
    "steps": 100,
    "batch_size": 32,
    "lr": 0.1,
    "hidden": 64,
    "eval_every": 10,
    "eval_size": 1000,
    "train_size": 12_000,
    "seed": 9,
    "powersgd_rank": 2,
    "powersgd_start": 2,
    "fail_rank": None,  # tests: this rank raises at its first step, to show that nothing hangs
}


def _data(config: dict, rank: int, world_size: int):
    """This worker's shard of a seeded training subset, and the fixed evaluation images (as tensors)."""
    import torch

    if config.get("data_file"):
        with np.load(config["data_file"]) as data:
            images, labels, test_images, test_labels = (data[k] for k in ("images", "labels", "test_images",
                                                                          "test_labels"))
    elif "_arrays" in config:
        images, labels, test_images, test_labels = config["_arrays"]
    else:
        images, labels, test_images, test_labels = _subset(config)
    shard = np.arange(rank, len(images), world_size)
    x = torch.from_numpy(images[shard].reshape(len(shard), -1).astype(np.float32) / 255)
    y = torch.from_numpy(labels[shard].astype(np.int64))
    tx = torch.from_numpy(test_images.reshape(len(test_images), -1).astype(np.float32) / 255)
    ty = torch.from_numpy(test_labels.astype(np.int64))
    return x, y, tx, ty


def _subset(config: dict):
    """The seeded training subset and evaluation images (uint8), the same in every process."""
    from qlearn.datasets import load_fashion_mnist

    rng = np.random.default_rng(config["seed"])
    images, labels = load_fashion_mnist("train")
    pick = rng.choice(len(images), size=config["train_size"], replace=False)
    test_images, test_labels = load_fashion_mnist("test")
    test_pick = np.sort(rng.choice(len(test_images), size=config["eval_size"], replace=False))
    return images[pick], labels[pick], test_images[test_pick], test_labels[test_pick]


def _model(config: dict):
    import torch
    from torch import nn

    torch.manual_seed(config["seed"])
    return nn.Sequential(nn.Linear(784, config["hidden"]), nn.ReLU(), nn.Linear(config["hidden"], 10))


def train_schemes(rank: int, world_size: int, config: dict) -> dict:
    """Train once per scheme in this (already initialised) process group; returns this worker's results.

    ``{scheme: {"steps": [...], "loss": [...], "accuracy": [...], "bytes_sent": float,
    "payload_bytes": int, "seconds": float}}``: test loss and accuracy at every ``eval_every`` steps.
    """
    import torch
    import torch.nn.functional as F
    from torch.nn.parallel import DistributedDataParallel as DDP

    from qlearn.bridge.ddp_hooks import register_scheme

    config = {**DEFAULTS, **config}
    torch.set_num_threads(1)
    x, y, tx, ty = _data(config, rank, world_size)
    order = np.random.default_rng(config["seed"] + 1 + rank).permutation(len(x))
    results = {}
    for scheme in config["schemes"]:
        model = DDP(_model(config))
        state = register_scheme(model, scheme, seed=config["seed"], rank=config["powersgd_rank"],
                                start_iter=config["powersgd_start"])
        optimizer = torch.optim.SGD(model.parameters(), lr=config["lr"])
        log = {"steps": [], "loss": [], "accuracy": []}

        def evaluate(step):
            with torch.no_grad():
                logits = model.module(tx)
            log["steps"].append(step)
            log["loss"].append(float(F.cross_entropy(logits, ty)))
            log["accuracy"].append(float((logits.argmax(1) == ty).float().mean()))

        start = time.perf_counter()
        evaluate(0)
        for step in range(config["steps"]):
            if config["fail_rank"] == rank:
                raise RuntimeError(f"worker {rank} fails on purpose (fail_rank={rank}), at step {step}")
            i = order[(step * config["batch_size"]) % len(x):][:config["batch_size"]]
            optimizer.zero_grad()
            F.cross_entropy(model(x[i]), y[i]).backward()
            optimizer.step()
            if (step + 1) % config["eval_every"] == 0:
                evaluate(step + 1)
        log["seconds"] = time.perf_counter() - start
        log["bytes_sent"] = float(state.bytes_sent)
        log["payload_bytes"] = int(state.payload_bytes)
        log["parameters"] = int(sum(p.numel() for p in model.parameters()))
        results[scheme] = log
    return results


def train_in_process(compress, decompress=None, *, workers: int = 2, steps: int = 60, config: dict | None = None,
                     error_feedback: bool = True) -> dict:
    """The int8 scheme without processes: ``workers`` simulated workers in this process, for a quick check.

    Each step every simulated worker computes the gradient of its own batch, flattened into one
    bucket, and ``compress(bucket, residual, seed) -> (codes, scale, new_residual)`` turns it into int8
    codes (the residual is kept only with ``error_feedback``); the average of ``decompress(codes, scale)``
    (default ``codes * scale``) over the workers updates the shared model. The same model, data and
    seeds as :func:`train_schemes`. Returns ``{"steps", "loss", "accuracy"}`` on the evaluation images,
    and the same for plain averaging (``"exact_loss"``, ``"exact_accuracy"``), for comparison.
    Used in lab 09, section 7, to run the learner's ``compress_int8``, which a spawned process cannot import.
    """
    import torch
    import torch.nn.functional as F

    from qlearn.bridge.ddp_hooks import int8_seed

    config = {**DEFAULTS, **(config or {}), "steps": steps}
    torch.set_num_threads(1)
    subset = _subset(config)
    config["data_file"] = None
    shards = [_data({**config, "_arrays": subset}, rank, workers) for rank in range(workers)]
    tx, ty = shards[0][2], shards[0][3]
    orders = [np.random.default_rng(config["seed"] + 1 + rank).permutation(len(shards[rank][0]))
              for rank in range(workers)]
    out = {}
    for mode in ("int8", "exact"):
        model = _model(config)
        params = list(model.parameters())
        optimizer = torch.optim.SGD(params, lr=config["lr"])
        residuals = [torch.zeros(sum(p.numel() for p in params)) for _ in range(workers)]
        for step in range(steps):
            total = torch.zeros_like(residuals[0])
            for rank, (x, y, _, _) in enumerate(shards):
                i = orders[rank][(step * config["batch_size"]) % len(x):][:config["batch_size"]]
                model.zero_grad()
                F.cross_entropy(model(x[i]), y[i]).backward()
                g = torch.cat([p.grad.reshape(-1) for p in params])
                if mode == "exact":
                    total += g
                    continue
                codes, scale, residual = compress(g, residuals[rank], int8_seed(config["seed"], rank, step, 0))
                if error_feedback:
                    residuals[rank] = residual
                total += (decompress(codes, scale) if decompress else codes.to(torch.float32) * scale)
            offset = 0
            for p in params:
                p.grad = (total[offset:offset + p.numel()] / workers).reshape(p.shape).clone()
                offset += p.numel()
            optimizer.step()
        with torch.no_grad():
            logits = model(tx)
        prefix = "" if mode == "int8" else "exact_"
        out[prefix + "loss"] = float(F.cross_entropy(logits, ty))
        out[prefix + "accuracy"] = float((logits.argmax(1) == ty).float().mean())
    with torch.no_grad():
        out["initial_loss"] = float(F.cross_entropy(_model(config)(tx), ty))
    return out


def worker(rank: int, world_size: int, store_path: str, config: dict, out_dir: str) -> None:
    """One worker process: join the group through the FileStore, train every scheme, write ``rank<r>.json``.

    A module-level function, so that ``spawn`` can import it in the child on every platform.
    """
    import torch.distributed as dist

    _loopback_for_gloo()
    timeout = datetime.timedelta(seconds=float(config.get("collective_timeout", 60)))
    store = dist.FileStore(store_path, world_size)
    dist.init_process_group("gloo", store=store, rank=rank, world_size=world_size, timeout=timeout)
    try:
        results = train_schemes(rank, world_size, config)
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps(results))
        dist.barrier()
    except BaseException:
        Path(out_dir, f"rank{rank}.error").write_text(traceback.format_exc())
        raise
    finally:
        dist.destroy_process_group()


def _loopback_for_gloo() -> None:
    """On one machine, gloo talks over the loopback interface (unless GLOO_SOCKET_IFNAME says otherwise)."""
    if "GLOO_SOCKET_IFNAME" not in os.environ:
        if sys.platform.startswith("linux"):
            os.environ["GLOO_SOCKET_IFNAME"] = "lo"
        elif sys.platform == "darwin":
            os.environ["GLOO_SOCKET_IFNAME"] = "lo0"


def run_ddp(config: dict | None = None, world_size: int = 2, timeout: float = 120.0) -> dict:
    """Spawn ``world_size`` gloo workers on this machine, train every scheme, return rank 0's results.

    The results of every rank are in ``results["ranks"]`` (their byte counts must agree). Raises
    ``TimeoutError`` if the workers take longer than ``timeout`` seconds (they are then killed), and
    ``RuntimeError`` with the worker's traceback if one of them fails.
    """
    import torch.multiprocessing as mp

    config = {**DEFAULTS, **(config or {})}
    config.setdefault("collective_timeout", max(10.0, min(60.0, timeout / 2)))
    with tempfile.TemporaryDirectory(prefix="qlearn_ddp_") as folder:
        store_path = os.path.join(folder, "store")
        config["data_file"] = os.path.join(folder, "data.npz")  # the workers read the subset from here
        images, labels, test_images, test_labels = _subset(config)
        np.savez(config["data_file"], images=images, labels=labels, test_images=test_images, test_labels=test_labels)
        context = mp.start_processes(worker, args=(world_size, store_path, config, folder), nprocs=world_size,
                                     join=False, start_method="spawn")
        deadline = time.monotonic() + timeout
        try:
            while not context.join(timeout=max(0.1, min(1.0, deadline - time.monotonic()))):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the {world_size} workers did not finish within {timeout:.0f} s; "
                                       f"they were stopped (raise `timeout` on a slow machine)")
        except (mp.ProcessRaisedException, mp.ProcessExitedException) as exc:
            _stop(context)
            raise RuntimeError(_failure_report(folder, world_size, exc)) from None
        finally:
            _stop(context)
        ranks = [json.loads(Path(folder, f"rank{r}.json").read_text()) for r in range(world_size)]
    config.pop("data_file")
    return {"config": config, "world_size": world_size, "ranks": ranks, **ranks[0]}


def _stop(context) -> None:
    """Kill the workers still alive and reap them (a no-op once they have exited)."""
    for process in context.processes:
        if process.is_alive():
            process.kill()
        process.join(timeout=5)


def _failure_report(folder: str, world_size: int, exc: Exception) -> str:
    """Every worker's traceback, the one that did not fail in a collective first (the root cause)."""
    errors = {r: Path(folder, f"rank{r}.error").read_text() for r in range(world_size)
              if Path(folder, f"rank{r}.error").exists()}
    if not errors:
        return f"a worker failed: {exc}"
    order = sorted(errors, key=lambda r: ("gloo" in errors[r].lower() or "connection" in errors[r].lower(), r))
    return "\n".join(f"worker {r} failed:\n{errors[r]}" for r in order)


def main(argv: list[str] | None = None) -> None:
    """Under ``torchrun``: join the group from the environment, train, and print rank 0's table."""
    import torch.distributed as dist

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=DEFAULTS["steps"])
    parser.add_argument("--schemes", nargs="+", default=DEFAULTS["schemes"])
    args = parser.parse_args(argv)
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=120))
    rank, world_size = dist.get_rank(), dist.get_world_size()
    try:
        results = train_schemes(rank, world_size, {"steps": args.steps, "schemes": args.schemes})
    finally:
        dist.destroy_process_group()
    if rank == 0:
        base = results[args.schemes[0]]["bytes_sent"]
        print(f"{'scheme':10s} {'MB sent/worker':>15s} {'ratio':>7s} {'test loss':>10s} {'accuracy':>9s}")
        for scheme, log in results.items():
            print(f"{scheme:10s} {log['bytes_sent'] / 1e6:15.3f} {base / log['bytes_sent']:7.2f} "
                  f"{log['loss'][-1]:10.4f} {log['accuracy'][-1]:9.2%}")


if __name__ == "__main__":
    main()
