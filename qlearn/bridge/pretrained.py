"""The trained Fashion-MNIST ResNet shipped in ``data/checkpoints/`` (labs load it instead of training).

Each checkpoint is a float32 ``state_dict`` saved with ``torch.save`` (``<name>.pt``) plus a JSON
file next to it (``<name>.pt.json``) with the training config, the measured test accuracy, the
torch version and the training time. ``load_pretrained`` checks the file's sha256 against the
value recorded here before loading it, with ``weights_only=True`` (no pickled code runs).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

import torch

from qlearn.bridge.resnet import FashionResNet, resnet_fmnist
from qlearn.datasets import data_root

__all__ = ["CHECKPOINTS", "DEFAULT_CHECKPOINT", "checkpoint_path", "load_pretrained", "pretrained_info"]

#: checkpoint file name -> (depth, sha256 of the file). Rebuild: see data/README.md.
CHECKPOINTS: dict[str, tuple[int, str]] = {
    "resnet14_fmnist.pt": (14, "73a02a99baa8070a92dc3091aa2a844268b808026531ab9ab5934817a9943e33"),
}
DEFAULT_CHECKPOINT = "resnet14_fmnist.pt"

_FIX = (
    "Restore it with `git checkout data/checkpoints/` (or re-clone the repository), or retrain it "
    "with the command in data/README.md."
)


def checkpoint_path(name: str = DEFAULT_CHECKPOINT, root: str | os.PathLike | None = None) -> Path:
    """Where checkpoint ``name`` lives: ``<data root>/checkpoints/<name>``.

    The data root is ``qlearn.datasets.data_root(root)``: the repository's ``data/`` by default.
    """
    if name not in CHECKPOINTS:
        raise ValueError(f"name must be one of {sorted(CHECKPOINTS)}, got {name!r}")
    return data_root(root) / "checkpoints" / name


def pretrained_info(name: str = DEFAULT_CHECKPOINT, root: str | os.PathLike | None = None) -> dict:
    """The JSON metadata saved with the checkpoint: config, ``test_accuracy``, ``torch_version``, ...

    >>> pretrained_info()["config"]["depth"]
    14
    """
    path = checkpoint_path(name, root)
    meta = path.with_suffix(path.suffix + ".json")
    if not meta.is_file():
        raise FileNotFoundError(f"checkpoint metadata not found: {meta}. {_FIX}")
    return json.loads(meta.read_text())


def load_pretrained(name: str = DEFAULT_CHECKPOINT, root: str | os.PathLike | None = None) -> FashionResNet:
    """The trained ``resnet_fmnist`` (float32, eval mode), after checking the file's sha256.

    Raises ``FileNotFoundError`` if the file is missing and ``ValueError`` if its sha256 does
    not match the recorded one; both messages name the file and say how to restore it.

    >>> model = load_pretrained()
    >>> model.training, next(model.parameters()).dtype
    (False, torch.float32)
    """
    path = checkpoint_path(name, root)
    depth, expected = CHECKPOINTS[name]
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}. {_FIX}")
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != expected:
        raise ValueError(
            f"checkpoint {path} is corrupt or was changed: its sha256 is {digest}, "
            f"expected {expected}. {_FIX}"
        )
    state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    model = resnet_fmnist(depth)
    model.load_state_dict(state)
    return model.eval()
