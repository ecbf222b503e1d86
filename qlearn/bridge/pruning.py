"""Pruning a torch model with qlearn's numpy masks, through ``torch.nn.utils.prune``.

``prunable_layers`` names the weights that pruning touches (every ``Conv2d`` and ``Linear``).
``global_masks`` / ``layer_masks`` compute keep-masks in numpy (``qlearn.pruning``) from the
model's current weights; ``apply_masks`` installs them with ``prune.custom_from_mask`` (the module
then holds ``weight_orig`` and the buffer ``weight_mask``, and ``weight = weight_orig * weight_mask``
is recomputed before every forward), ``update_masks`` overwrites the installed masks in place
(iterative pruning during training), and ``remove_pruning`` makes the zeros permanent
(``prune.remove``). ``sparsity_report`` counts the zeros.

``save_sparse`` / ``load_sparse`` store a pruned model compactly: each pruned weight as its kept
values plus a bit-packed mask (``np.packbits``), everything else as is. ``sensitivity_scan`` prunes
one layer at a time and measures the accuracy (lab 07, section 2).
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.utils import prune

from qlearn.pruning import global_magnitude_masks, magnitude_mask

__all__ = [
    "apply_masks",
    "current_masks",
    "global_masks",
    "layer_masks",
    "load_pruned",
    "load_sparse",
    "pruned_results",
    "prunable_layers",
    "remove_pruning",
    "save_sparse",
    "sensitivity_scan",
    "sparsity_report",
    "update_masks",
]


def prunable_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The ``Conv2d`` and ``Linear`` modules of ``model`` by qualified name, in model order.

    >>> list(prunable_layers(nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Linear(2, 3))))
    ['0', '2']
    """
    return {name: m for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}


def _weight(module: nn.Module) -> np.ndarray:
    """The effective weight as float32 numpy (``weight_orig * weight_mask`` when pruned)."""
    return module.weight.detach().cpu().numpy().astype(np.float32, copy=True)


def _check_names(model: nn.Module, names: Iterable[str]) -> dict[str, nn.Module]:
    layers = prunable_layers(model)
    unknown = [n for n in names if n not in layers]
    if unknown:
        raise ValueError(f"unknown layer name(s) {unknown}; prunable layers are {list(layers)}")
    return layers


def global_masks(model: nn.Module, amount: float | int, names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """Global magnitude keep-masks over the weights of ``names`` (default: every prunable layer).

    The same masks as ``prune.global_unstructured(..., prune.L1Unstructured, amount=amount)``.

    >>> torch.manual_seed(0); net = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))  # doctest: +ELLIPSIS
    <...>
    >>> masks = global_masks(net, 0.5)
    >>> sum(int((~m).sum()) for m in masks.values())       # round(0.5 * 24) weights pruned
    12
    """
    layers = prunable_layers(model)
    names = list(layers) if names is None else list(names)
    _check_names(model, names)
    masks = global_magnitude_masks([_weight(layers[n]) for n in names], amount)
    return dict(zip(names, masks))


def layer_masks(model: nn.Module, amounts: Mapping[str, float | int]) -> dict[str, np.ndarray]:
    """Per-layer magnitude keep-masks: layer ``name`` loses ``amounts[name]`` (``prune.l1_unstructured``).

    >>> net = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    >>> {n: int((~m).sum()) for n, m in layer_masks(net, {"0": 0.25, "1": 3}).items()}
    {'0': 4, '1': 3}
    """
    layers = _check_names(model, amounts)
    return {n: magnitude_mask(_weight(layers[n]), a) for n, a in amounts.items()}


def _mask_tensor(mask: object, module: nn.Module, name: str) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(mask))
    weight = module.weight
    if tuple(t.shape) != tuple(weight.shape):
        raise ValueError(f"mask for {name!r} has shape {tuple(t.shape)}, the weight has {tuple(weight.shape)}")
    return t.to(dtype=weight.dtype, device=weight.device)


def apply_masks(model: nn.Module, masks: Mapping[str, object]) -> nn.Module:
    """Install keep-masks with ``prune.custom_from_mask`` (in place; returns ``model``).

    A layer that is already pruned gets its mask combined (logical and) with the new one, as torch
    does for repeated pruning.

    >>> net = nn.Sequential(nn.Linear(2, 2, bias=False))
    >>> with torch.no_grad(): _ = net[0].weight.copy_(torch.tensor([[1.0, -2.0], [3.0, 0.5]]))
    >>> apply_masks(net, {"0": np.array([[True, False], [True, True]])})[0].weight
    tensor([[1.0000, -0.0000],
            [3.0000, 0.5000]], grad_fn=<MulBackward0>)
    """
    layers = _check_names(model, masks)
    for name, mask in masks.items():
        module = layers[name]
        prune.custom_from_mask(module, "weight", _mask_tensor(mask, module, name))
    return model


def update_masks(model: nn.Module, masks: Mapping[str, object]) -> nn.Module:
    """Overwrite the installed ``weight_mask`` buffers (no new hook); layers must already be pruned.

    Used by iterative pruning: the masks are recomputed from the current weights and replaced,
    while the optimizer keeps training ``weight_orig``.
    """
    layers = _check_names(model, masks)
    for name, mask in masks.items():
        module = layers[name]
        if not prune.is_pruned(module) or not hasattr(module, "weight_mask"):
            raise ValueError(f"layer {name!r} is not pruned yet: call apply_masks first")
        with torch.no_grad():
            module.weight_mask.copy_(_mask_tensor(mask, module, name))
            module.weight = module.weight_orig * module.weight_mask
    return model


def current_masks(model: nn.Module) -> dict[str, np.ndarray]:
    """The installed keep-masks (``weight_mask`` buffers) as boolean numpy arrays, by layer name."""
    return {
        n: m.weight_mask.detach().cpu().numpy().astype(bool)
        for n, m in prunable_layers(model).items()
        if hasattr(m, "weight_mask")
    }


def remove_pruning(model: nn.Module) -> nn.Module:
    """Make the pruning permanent with ``prune.remove`` on every pruned layer (in place).

    Afterwards ``weight`` is a plain parameter again, holding the zeros; ``weight_orig`` and
    ``weight_mask`` are gone.
    """
    for m in prunable_layers(model).values():
        if prune.is_pruned(m) and hasattr(m, "weight_orig"):
            prune.remove(m, "weight")
    return model


def sparsity_report(model: nn.Module) -> dict[str, tuple[int, int]]:
    """``{layer: (zeros, size)}`` of the effective weights, plus ``"total"`` over all of them.

    >>> net = nn.Sequential(nn.Linear(2, 2, bias=False))
    >>> with torch.no_grad(): _ = net[0].weight.copy_(torch.tensor([[0.0, 1.0], [0.0, 2.0]]))
    >>> sparsity_report(net)
    {'0': (2, 4), 'total': (2, 4)}
    """
    report = {}
    for name, module in prunable_layers(model).items():
        w = module.weight.detach()
        report[name] = (int((w == 0).sum()), w.numel())
    report["total"] = (sum(z for z, _ in report.values()), sum(s for _, s in report.values()))
    return report


@torch.no_grad()
def sensitivity_scan(
    model: nn.Module,
    loader: Iterable,
    sparsities: Sequence[float],
    names: Sequence[str] | None = None,
    evaluate=None,
) -> dict[str, list[float]]:
    """Accuracy after pruning one layer at a time (magnitude, no fine-tuning), the others dense.

    Returns ``{layer: [accuracy at each sparsity]}``. ``evaluate(model, loader)`` defaults to
    ``qlearn.bridge.ptq.evaluate``. The model is not changed.
    """
    if evaluate is None:
        from qlearn.bridge.ptq import evaluate
    layers = prunable_layers(model)
    names = list(layers) if names is None else list(names)
    _check_names(model, names)
    batches = list(loader)
    result: dict[str, list[float]] = {}
    for name in names:
        weight = layers[name].weight
        original = weight.detach().clone()
        accs = []
        try:
            for s in sparsities:
                mask = magnitude_mask(original.numpy(), float(s))
                weight.copy_(original * torch.from_numpy(mask).to(original.dtype))
                accs.append(evaluate(model, batches))
        finally:
            weight.copy_(original)
        result[name] = accs
    return result


def save_sparse(model: nn.Module, path: str | Path, info: Mapping | None = None) -> dict:
    """Save ``model.state_dict()`` compactly: pruned weights as kept values + packed mask.

    Each weight of a prunable layer with zeros is stored as ``<name>.values`` (float32, the
    non-zeros in C order), ``<name>.packed_mask`` (uint8, ``np.packbits`` of the keep-mask) and
    ``<name>.shape``; every other tensor as it is. Call after ``remove_pruning``. Writes ``path`` and
    ``path.json`` (``info`` + file name + sha256); returns that metadata.
    """
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    if any(k.endswith("weight_orig") or k.endswith("weight_mask") for k in state):
        raise ValueError("the model still has pruning re-parametrizations: call remove_pruning(model) first")
    out: dict[str, torch.Tensor] = {}
    weight_names = {f"{n}.weight" for n in prunable_layers(model)}
    for key, value in state.items():
        if key in weight_names and bool((value == 0).any()):
            keep = (value != 0).numpy()
            out[key + ".values"] = value[value != 0].clone()
            out[key + ".packed_mask"] = torch.from_numpy(np.packbits(keep.reshape(-1)))
            out[key + ".shape"] = torch.tensor(list(value.shape), dtype=torch.int64)
        else:
            out[key] = value
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(out, path)
    meta = dict(info or {}, file=path.name, sha256=hashlib.sha256(path.read_bytes()).hexdigest())
    path.with_suffix(path.suffix + ".json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def load_sparse(model: nn.Module, path: str | Path, sha256: str | None = None) -> nn.Module:
    """Load a file written by ``save_sparse`` into ``model`` (in place, eval mode; returns it).

    ``sha256``, when given, must match the file's digest (``ValueError`` otherwise).
    """
    path = Path(path)
    data = path.read_bytes()
    if sha256 is not None:
        digest = hashlib.sha256(data).hexdigest()
        if digest != sha256:
            raise ValueError(f"{path} is corrupt or was changed: sha256 {digest}, expected {sha256}")
    stored = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    state: dict[str, torch.Tensor] = {}
    for key, value in stored.items():
        if key.endswith(".values"):
            base = key[: -len(".values")]
            shape = tuple(stored[base + ".shape"].tolist())
            count = int(np.prod(shape))
            keep = np.unpackbits(stored[base + ".packed_mask"].numpy(), count=count).astype(bool)
            dense = torch.zeros(count, dtype=value.dtype)
            dense[torch.from_numpy(keep)] = value
            state[base] = dense.reshape(shape)
        elif not (key.endswith(".packed_mask") or key.endswith(".shape")):
            state[key] = value
    model.load_state_dict(state)
    return model.eval()


RESULTS_FILE = "pruned_results.json"
_PRUNED = {"global80": "pruned_global80.pt", "channels50": "pruned_channels50.pt"}


def pruned_results(root=None) -> dict:
    """The results of ``tools/train_pruned.py``: ``data/checkpoints/pruned_results.json`` as a dict."""
    from qlearn.datasets import data_root

    path = data_root(root) / "checkpoints" / RESULTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; rebuild it with the command in tools/train_pruned.py")
    return json.loads(path.read_text())


def load_pruned(name: str, root=None) -> nn.Module:
    """A shipped pruned ResNet-14 (eval mode): ``"global80"`` (80% global magnitude sparsity, stored
    with ``save_sparse``) or ``"channels50"`` (half of the inner channels of every block removed).
    The file's sha256 is checked against the one recorded in the results file.
    """
    from qlearn.bridge.resnet import resnet_fmnist
    from qlearn.bridge.surgery import prune_block_channels
    from qlearn.datasets import data_root

    if name not in _PRUNED:
        raise ValueError(f"name must be one of {sorted(_PRUNED)}, got {name!r}")
    file = _PRUNED[name]
    expected = pruned_results(root)["meta"]["files"][file]
    path = data_root(root) / "checkpoints" / file
    if name == "global80":
        return load_sparse(resnet_fmnist(14), path, sha256=expected)
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != expected:
        raise ValueError(f"{path} is corrupt or was changed: sha256 {digest}, expected {expected}")
    model = prune_block_channels(resnet_fmnist(14), 0.5)
    model.load_state_dict(torch.load(io.BytesIO(data), map_location="cpu", weights_only=True))
    return model.eval()
