"""Train the Fashion-MNIST ResNet from scratch and save a checkpoint with its metadata.

    python -m qlearn.bridge.train --depth 14 --epochs 10 --seed 0 --out data/checkpoints/resnet14_fmnist.pt

Recipe: SGD with Nesterov momentum 0.9, weight decay 5e-4 (not on BN and biases), batch 128,
one-cycle learning rate (warm-up to ``--lr`` over the first 15% of steps, then cosine decay to
almost 0), cross-entropy with label smoothing 0.1, light augmentation (random crop with 2 pixels
of padding, horizontal flip). At the end the script measures the accuracy on the full test set
and writes ``<out>`` (the float32 ``state_dict``) and ``<out>.json`` next to it: the config, the
test accuracy, the torch version and the training time.

Reproducible: ``torch.manual_seed(seed)`` sets the initial weights and the augmentation, the
loader shuffles with its own ``torch.Generator`` whose seed is drawn from
``np.random.default_rng(seed)``, and everything runs single-process
on ``--threads`` CPU threads (2 by default). The same seed gives the same data order; the float
sums inside the kernels may still differ in the last bits from one machine to another.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from qlearn.bridge.data import FashionMNIST, RandomCropFlip, _AugmentCollate, make_loader
from qlearn.bridge.ptq import evaluate
from qlearn.bridge.resnet import resnet_fmnist

__all__ = ["finetune", "main", "subset_loader", "train"]


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on conv and linear weights only, not on BN parameters and biases."""
    decay, no_decay = [], []
    for p in model.parameters():
        (decay if p.ndim > 1 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def train(
    depth: int = 14,
    epochs: int = 10,
    seed: int = 0,
    *,
    lr: float = 0.2,
    batch_size: int = 128,
    weight_decay: float = 5e-4,
    label_smoothing: float = 0.1,
    threads: int = 2,
    channels_last: bool = True,
    progress: bool = True,
) -> tuple[torch.nn.Module, dict]:
    """Train ``resnet_fmnist(depth)`` and return ``(model in eval mode, info dict)``."""
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)  # numpy-side randomness: here only the loader's shuffling seed
    model = resnet_fmnist(depth)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    train_loader = make_loader("train", batch_size, seed=int(rng.integers(2**31)))
    test_loader = make_loader("test", 500)
    optimizer = torch.optim.SGD(
        _param_groups(model, weight_decay), lr=lr, momentum=0.9, nesterov=True
    )
    steps = epochs * len(train_loader)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, total_steps=steps, pct_start=0.15, div_factor=10, final_div_factor=100
    )
    start, start_cpu = time.perf_counter(), time.process_time()
    bar = tqdm(total=steps, disable=not progress, unit="batch", mininterval=5)
    for epoch in range(epochs):
        model.train()
        running, seen = 0.0, 0
        for xb, yb in train_loader:
            xb = xb.to(memory_format=memory_format)
            loss = F.cross_entropy(model(xb), yb, label_smoothing=label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            running += loss.item() * len(yb)
            seen += len(yb)
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{running / seen:.4f}", refresh=False)
    bar.close()
    train_seconds = time.perf_counter() - start
    train_cpu_seconds = time.process_time() - start_cpu
    model.eval()
    accuracy = evaluate(model, test_loader)
    info = {
        "model": f"resnet_fmnist({depth})",
        "config": {
            "depth": depth,
            "epochs": epochs,
            "seed": seed,
            "lr": lr,
            "batch_size": batch_size,
            "weight_decay": weight_decay,
            "label_smoothing": label_smoothing,
            "optimizer": "SGD(momentum=0.9, nesterov=True)",
            "schedule": "OneCycleLR(pct_start=0.15, div_factor=10, final_div_factor=100)",
            "augmentation": "RandomCropFlip(pad=2)",
            "threads": threads,
            "channels_last": channels_last,
        },
        "test_accuracy": accuracy,
        "train_loss_last_epoch": running / seen,
        "train_seconds": round(train_seconds, 1),
        "train_cpu_seconds": round(train_cpu_seconds, 1),
        "torch_version": torch.__version__,
        "num_parameters": sum(p.numel() for p in model.parameters()),
    }
    return model, info


def subset_loader(n_images: int, seed: int = 0, batch_size: int = 128, augment: bool = True) -> torch.utils.data.DataLoader:
    """Training loader over a seeded random subset of ``n_images`` of the 60 000 training images.

    The subset is ``np.random.default_rng(seed).permutation(60000)[:n_images]``; the loader shuffles
    with a ``torch.Generator`` seeded by ``seed`` and augments like ``make_loader("train")``.
    Used for short fine-tuning (lab 07 and ``tools/train_pruned.py``).

    >>> xb, yb = next(iter(subset_loader(256, seed=1, batch_size=64)))
    >>> tuple(xb.shape), len(subset_loader(256, batch_size=64))
    ((64, 1, 28, 28), 4)
    """
    if isinstance(n_images, bool) or not isinstance(n_images, int) or not 1 <= n_images <= 60000:
        raise ValueError(f"n_images must be an int in [1, 60000], got {n_images!r}")
    ds = FashionMNIST("train")
    idx = torch.from_numpy(np.random.default_rng(seed).permutation(len(ds))[:n_images])
    ds.data, ds.targets = ds.data[idx], ds.targets[idx]
    collate = _AugmentCollate(RandomCropFlip()) if augment else None
    generator = torch.Generator().manual_seed(seed)
    return torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=True, generator=generator,
                                       num_workers=0, collate_fn=collate)


def finetune(
    model: torch.nn.Module,
    loader,
    epochs: int = 1,
    *,
    lr: float = 0.01,
    weight_decay: float = 5e-4,
    label_smoothing: float = 0.1,
    on_step=None,
    progress: bool = True,
    desc: str = "fine-tune",
) -> dict:
    """Short fine-tuning in place: SGD (Nesterov momentum 0.9), cosine decay of ``lr`` to 0.

    ``on_step(step, total_steps)``, if given, runs before every optimizer step (step 0, 1, ...):
    iterative pruning uses it to update the masks. Pruned layers (``torch.nn.utils.prune``) keep
    their zeros because the forward recomputes ``weight = weight_orig * weight_mask``.
    Returns ``{"steps", "train_loss_last_epoch", "seconds"}``; the model is left in eval mode.
    Randomness (augmentation) comes from torch's global generator: seed it first.
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive int, got {epochs!r}")
    optimizer = torch.optim.SGD(_param_groups(model, weight_decay), lr=lr, momentum=0.9, nesterov=True)
    total = epochs * len(loader)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
    start = time.perf_counter()
    bar = tqdm(total=total, disable=not progress, unit="batch", desc=desc, mininterval=2)
    step, running, seen = 0, 0.0, 0
    model.train()
    for _ in range(epochs):
        running, seen = 0.0, 0
        for xb, yb in loader:
            if on_step is not None:
                on_step(step, total)
            loss = F.cross_entropy(model(xb), yb, label_smoothing=label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            running += loss.item() * len(yb)
            seen += len(yb)
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{running / seen:.4f}", refresh=False)
    bar.close()
    model.eval()
    return {"steps": step, "train_loss_last_epoch": running / max(seen, 1), "seconds": time.perf_counter() - start}


def save_checkpoint(model: torch.nn.Module, info: dict, out: str | Path) -> Path:
    """Save the contiguous float32 ``state_dict`` to ``out`` and ``info`` (+ sha256) to ``out.json``."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    torch.save(state, out)
    info = dict(info, file=out.name, sha256=hashlib.sha256(out.read_bytes()).hexdigest())
    out.with_suffix(out.suffix + ".json").write_text(json.dumps(info, indent=2) + "\n")
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m qlearn.bridge.train", description=__doc__.split("\n")[0])
    parser.add_argument("--depth", type=int, default=14, help="6n + 2: 8, 14, 20, ... (default 14)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr", type=float, default=0.2, help="peak learning rate of the one-cycle schedule")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, required=True, help="checkpoint path, e.g. data/checkpoints/x.pt")
    args = parser.parse_args(argv)
    model, info = train(
        args.depth, args.epochs, args.seed, lr=args.lr, batch_size=args.batch_size, threads=args.threads
    )
    path = save_checkpoint(model, info, args.out)
    print(json.dumps(info, indent=2))
    print(f"saved {path} and {path}.json")


if __name__ == "__main__":
    main()
