"""Full runs for lab 07: prune the shipped ResNet-14 and fine-tune it briefly, on one CPU thread.

Reproduce (about 10 CPU-minutes on one thread; the numbers in the lab come from this command):

    nice -n 10 .venv/bin/python tools/train_pruned.py --seed 0 --images 5000 --out-dir data/checkpoints

Runs, all starting from ``data/checkpoints/resnet14_fmnist.pt`` (93.22% test accuracy):

1. ``sensitivity``: each prunable layer alone pruned by magnitude at several sparsities, accuracy on
   the fixed scan subset (the first ``SCAN_IMAGES`` test images), no fine-tuning.
2. ``global80``: gradual global magnitude pruning (all conv and linear weights ranked together) to
   80% with the cubic schedule of Zhu & Gupta (mask updates every ``FREQUENCY`` steps over the first
   60% of the steps), 2 epochs over a seeded subset of ``--images`` training images; shipped as
   ``pruned_global80.pt`` (kept values + bit-packed masks, ``qlearn.bridge.pruning.save_sparse``).
3. ``channels50``: half of the inner channels of every residual block removed (L2 filter norm,
   ``qlearn.bridge.surgery``), 2 epochs on the subset; shipped as ``pruned_channels50.pt``.
4. ``deep_compression``: the ``global80`` model with k-means weight sharing (4-bit codes, code 0 =
   zero) and Huffman coding of codes and relative indices; plain int8 per-channel weights for
   comparison.
5. ``oneshot`` / ``iterative`` at 50, 70 and 90% global sparsity: one-shot prunes once, then
   fine-tunes; iterative follows the cubic schedule within the same budget: 1 epoch on the subset.

Test accuracies are measured on the first ``TEST_IMAGES`` test images (the budget of 2 shared cores
does not allow the full 10 000 for every run). The results file is rewritten after each stage.

Writes ``<out-dir>/pruned_results.json`` with every accuracy, the command, the seed, the torch and
numpy versions, CPU and wall times, and the sha256 of each file it wrote and read. Seeded:
``torch.manual_seed(seed)`` before each run (augmentation), the subset and loader order from
``seed``; float sums in the kernels may differ in the last bits between machines.
``--quick`` runs everything on tiny sizes to check the script (results go to ``--out-dir``).
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from qlearn.affine import fake_quantize
from qlearn.bridge.data import make_loader
from qlearn.bridge.macs import count_macs, count_params
from qlearn.bridge.pretrained import checkpoint_path, load_pretrained
from qlearn.bridge.pruning import (
    apply_masks,
    load_sparse,
    global_masks,
    prunable_layers,
    remove_pruning,
    save_sparse,
    sensitivity_scan,
    sparsity_report,
    update_masks,
)
from qlearn.bridge.ptq import evaluate
from qlearn.bridge.resnet import resnet_fmnist
from qlearn.bridge.surgery import prune_block_channels
from qlearn.bridge.train import finetune, subset_loader
from qlearn.qparams import calc_qparams
from qlearn.schedule import cubic_sparsity
from qlearn.weight_sharing import compressed_bits, share_weights, shared_weight

SCAN_IMAGES = 500
TEST_IMAGES = 5000
SCAN_SPARSITIES = (0.5, 0.7, 0.8, 0.9)
SPARSITIES = (0.5, 0.7, 0.9)
STAGES = ("sensitivity", "global80", "channels50", "deep_compression", "schemes")
FREQUENCY = 8  # steps between mask updates (iterative)
RAMP = 0.6  # fraction of the fine-tuning steps over which the sparsity ramps up
LR = 0.01
SHARE_BITS = 4  # bits per code of a layer with at least SMALL_LAYER weights
SMALL_BITS = 8  # smaller layers (conv1, fc, the first shortcut) keep 8-bit codes: cheap, and conv1 is fragile
SMALL_LAYER = 1000
INDEX_BITS = 4


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def acc(model, loader) -> float:
    with torch.no_grad():
        return round(evaluate(model, loader), 4)


def iterative_hook(model, final: float, ramp_steps: int):
    """``on_step`` that sets the global sparsity to the cubic schedule's value every FREQUENCY steps."""
    apply_masks(model, {n: np.ones(m.weight.shape, bool) for n, m in prunable_layers(model).items()})

    def on_step(step, total):
        if step % FREQUENCY == 0 or step == ramp_steps:
            s = cubic_sparsity(min(step, ramp_steps), final, begin=0, end=ramp_steps)
            update_masks(model, global_masks(model, s))

    return on_step


def run_pruning(base, scheme, sparsity, loader, test_loader, epochs, seed, progress):
    torch.manual_seed(seed)
    model = copy.deepcopy(base)
    steps = epochs * len(loader)
    before = None
    if scheme == "oneshot":
        apply_masks(model, global_masks(model, sparsity))
        before = acc(model, test_loader)
        on_step = None
    else:
        ramp = max(1, int(RAMP * steps))
        on_step = iterative_hook(model, sparsity, ramp)
    info = finetune(model, loader, epochs, lr=LR, on_step=on_step, progress=progress,
                    desc=f"{scheme} {sparsity:.0%}")
    remove_pruning(model)
    zeros, size = sparsity_report(model)["total"]
    result = {
        "scheme": scheme,
        "target_sparsity": sparsity,
        "sparsity": round(zeros / size, 4),
        "accuracy_before_finetune": before,
        "accuracy": acc(model, test_loader),
        "steps": steps,
        "train_loss_last_epoch": round(info["train_loss_last_epoch"], 4),
    }
    return model, result


def int8_weights(model):
    """Copy of ``model`` with every conv/linear weight fake-quantized to int8, symmetric per output channel."""
    model = copy.deepcopy(model)
    for m in prunable_layers(model).values():
        w = m.weight.detach().numpy()
        amax = np.abs(w.reshape(w.shape[0], -1)).max(axis=1)
        scale, zp = calc_qparams(-amax, amax, -127, 127, symmetric=True)
        wq = fake_quantize(w, scale, zp, -127, 127, axis=0)
        with torch.no_grad():
            m.weight.copy_(torch.from_numpy(wq))
    return model


def share_bits(size: int) -> int:
    """Bits per code for a layer of ``size`` weights."""
    return SMALL_BITS if size < SMALL_LAYER else SHARE_BITS


def deep_compression(model, test_loader, index_bits=INDEX_BITS):
    """Weight sharing of every pruned layer + the size table of each stage (bits)."""
    shared = copy.deepcopy(model)
    layers = prunable_layers(shared)
    n_weights = sum(m.weight.numel() for m in layers.values())
    other = sum(p.numel() for p in shared.parameters()) - n_weights  # BN, biases: float32 in every stage
    rows = {"pruned": 0, "shared": 0, "huffman": 0}
    entries = 0
    bits_of = {}
    for name, m in layers.items():
        w = m.weight.detach().numpy()
        n_bits = bits_of[name] = share_bits(w.size)
        codebook, codes = share_weights(w, n_bits, mask=w != 0)
        with torch.no_grad():
            m.weight.copy_(torch.from_numpy(shared_weight(codebook, codes)))
        plain = compressed_bits(codes, n_bits, index_bits)
        coded = compressed_bits(codes, n_bits, index_bits, huffman=True)
        entries += plain["entries"]
        rows["pruned"] += plain["entries"] * (32 + index_bits)
        rows["shared"] += plain["total"]
        rows["huffman"] += coded["total"]
    n_channels = sum(m.weight.shape[0] for m in layers.values())
    weight_bits = {
        "float32": 32 * n_weights,
        "int8": 8 * n_weights + 32 * n_channels,
        **rows,
    }
    table = {}
    for stage, bits in weight_bits.items():
        total = bits + 32 * other
        table[stage] = {
            "weight_bits": int(bits),
            "bits_per_weight": round(bits / n_weights, 3),
            "bytes": int(np.ceil(total / 8)),
            "ratio_vs_float32": round(32 * (n_weights + other) / total, 2),
        }
    return shared, table, {"n_weights": n_weights, "other_params": other, "entries": entries,
                           "n_bits": SHARE_BITS, "small_bits": SMALL_BITS, "small_layer": SMALL_LAYER,
                           "bits": bits_of, "index_bits": index_bits}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--images", type=int, default=20000, help="size of the seeded fine-tuning subset")
    parser.add_argument("--out-dir", type=Path, default=Path("data/checkpoints"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to test the script")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--stages", default="all",
                        help="comma-separated subset of sensitivity,global80,channels50,deep_compression,schemes; "
                             "the others are kept from the existing results file (default: all)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    progress = not args.no_progress
    t0, c0 = time.perf_counter(), time.process_time()
    out = args.out_dir
    out.mkdir(parents=True, exist_ok=True)

    stages = set(STAGES if args.stages == "all" else args.stages.split(","))
    if not stages <= set(STAGES):
        parser.error(f"--stages must name some of {STAGES}, got {args.stages!r}")
    base = load_pretrained()
    test_loader = list(make_loader("test", 500, limit=500 if args.quick else TEST_IMAGES))
    scan_loader = list(make_loader("test", 500, limit=200 if args.quick else SCAN_IMAGES))
    loader = subset_loader(512 if args.quick else args.images, seed=args.seed)
    long_epochs = 1 if args.quick else 2
    previous = out / "pruned_results.json"
    if stages != set(STAGES):
        results = json.loads(previous.read_text())
        files: dict[str, str] = results["meta"]["files"]
        command = results["meta"]["command"] + f" && <same> --stages {args.stages}"
        spent = (results["meta"]["wall_seconds"], results["meta"]["cpu_seconds"])
    else:
        spent = (0.0, 0.0)
        files = {}
        command = "nice -n 10 .venv/bin/python tools/train_pruned.py " + " ".join(sys.argv[1:] if argv is None else argv)
        results = {"base": {"accuracy": acc(base, test_loader), "scan_accuracy": acc(base, scan_loader)}}
    print("base", results["base"], flush=True)

    def save(stage):
        results["meta"] = {
            "command": command,
            "completed": stage,
            "seed": args.seed,
            "images": args.images,
            "test_images": len(test_loader) * 500 if args.quick else TEST_IMAGES,
            "quick": args.quick,
            "threads": args.threads,
            "lr": LR,
            "frequency": FREQUENCY,
            "ramp": RAMP,
            "torch_version": torch.__version__,
            "numpy_version": np.__version__,
            "python": platform.python_version(),
            "base_checkpoint": {"file": checkpoint_path().name, "sha256": sha256(checkpoint_path())},
            "files": files,
            "wall_seconds": round(spent[0] + time.perf_counter() - t0, 1),
            "cpu_seconds": round(spent[1] + time.process_time() - c0, 1),
        }
        (out / "pruned_results.json").write_text(json.dumps(results, indent=2) + "\n")
        print(f"[{stage}] saved; cpu {results['meta']['cpu_seconds']} s, wall {results['meta']['wall_seconds']} s",
              flush=True)

    names = list(prunable_layers(base))
    if "sensitivity" in stages:
        run_sensitivity(results, base, scan_loader, names, args.quick)
        save("sensitivity")
    if "global80" in stages:
        g80, r = run_pruning(base, "iterative", 0.8, loader, test_loader, long_epochs, args.seed, progress)
        results["global80"] = r
        meta = save_sparse(g80, out / "pruned_global80.pt", {"model": "resnet_fmnist(14)", **r})
        files[meta["file"]] = meta["sha256"]
        save("global80")
    else:
        g80 = load_sparse(resnet_fmnist(14), out / "pruned_global80.pt", sha256=files["pruned_global80.pt"])
    if "channels50" in stages:
        run_channels(results, base, loader, test_loader, long_epochs, args.seed, progress, out, files)
        save("channels50")
    if "deep_compression" in stages:
        shared, table, extra = deep_compression(g80, test_loader)
        table["float32"]["accuracy"] = results["base"]["accuracy"]
        table["int8"]["accuracy"] = acc(int8_weights(base), test_loader)
        table["pruned"]["accuracy"] = results["global80"]["accuracy"]
        table["shared"]["accuracy"] = table["huffman"]["accuracy"] = acc(shared, test_loader)
        results["deep_compression"] = {"table": table, **extra}
        save("deep_compression")
    if "schemes" in stages:
        results["schemes"] = []
        for sparsity in SPARSITIES:
            for scheme in ("oneshot", "iterative"):
                _, r = run_pruning(base, scheme, sparsity, loader, test_loader, 1, args.seed, progress)
                results["schemes"].append(r)
                save(f"{scheme} {sparsity}")
    save("all")


def run_sensitivity(results, base, scan_loader, names, quick):
    scan = sensitivity_scan(base, scan_loader, SCAN_SPARSITIES, names[:3] if quick else names)
    results["sensitivity"] = {"scan_images": len(scan_loader) * 500 if quick else SCAN_IMAGES,
                              "sparsities": list(SCAN_SPARSITIES),
                              "layer_sizes": {n: prunable_layers(base)[n].weight.numel() for n in names},
                              "accuracy": {n: [round(a, 4) for a in v] for n, v in scan.items()}}


def run_channels(results, base, loader, test_loader, epochs, seed, progress, out, files):
    torch.manual_seed(seed)
    small = prune_block_channels(base, 0.5)
    before = acc(small, test_loader)
    info = finetune(small, loader, epochs, lr=LR, progress=progress, desc="channels 50%")
    results["channels50"] = {
        "amount": 0.5,
        "accuracy_before_finetune": before,
        "accuracy": acc(small, test_loader),
        "steps": info["steps"],
        "params": [count_params(base), count_params(small)],
        "macs": [count_macs(base)["total"], count_macs(small)["total"]],
    }
    path = out / "pruned_channels50.pt"
    torch.save({k: v.contiguous() for k, v in small.state_dict().items()}, path)
    files[path.name] = sha256(path)


if __name__ == "__main__":
    main()
