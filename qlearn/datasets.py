"""Small datasets shipped with the repository, loaded with numpy only (nothing downloads, ever).

Fashion-MNIST (Xiao, Rasul and Vollgraf, 2017; MIT licence, (c) 2017 Zalando SE): 70 000 grey
28x28 images of clothes in 10 classes, 60 000 for training and 10 000 for testing. The four
official files live in ``data/fashion-mnist/`` in the IDX format, gzip-compressed:

    magic (4 bytes, big-endian: 0x00 0x00 dtype=0x08 ndim) | ndim sizes (uint32, big-endian) | data

``load_fashion_mnist`` checks each file's sha256 against the value recorded here (and in
``data/README.md``) before parsing it, so a truncated or altered file fails loudly, with a
message that says how to restore it.

The data folder is the repository's ``data/`` (found relative to this package, which is
installed editable with ``pip install -e .``). Set the environment variable ``QLEARN_DATA`` to
use another folder, or pass ``root=`` explicitly.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import os
from pathlib import Path

import numpy as np

__all__ = ["FASHION_MNIST_CLASSES", "FASHION_MNIST_FILES", "data_root", "load_fashion_mnist"]

#: Class names, indexed by label (the order of the official release).
FASHION_MNIST_CLASSES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

#: file name -> sha256 of the shipped ``.gz`` file (identical to the upstream release).
FASHION_MNIST_FILES: dict[str, str] = {
    "train-images-idx3-ubyte.gz": "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
    "train-labels-idx1-ubyte.gz": "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
    "t10k-images-idx3-ubyte.gz": "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
    "t10k-labels-idx1-ubyte.gz": "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
}

_SPLITS = {"train": ("train", 60_000), "test": ("t10k", 10_000)}
_FIX = (
    "Restore it with `git checkout data/` (or re-clone the repository), or rebuild it with "
    "`sh data/rebuild.sh` (see data/README.md)."
)


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The data folder: ``root`` if given, else ``$QLEARN_DATA`` if set, else the repository's ``data/``.

    >>> data_root("/tmp/somewhere")
    PosixPath('/tmp/somewhere')
    """
    if root is not None:
        return Path(root)
    env = os.environ.get("QLEARN_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / "data"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _read_idx(path: Path, expected_sha256: str) -> np.ndarray:
    """Verify ``path``'s sha256, then parse the gzip-compressed IDX file into a uint8 array."""
    if not path.is_file():
        raise FileNotFoundError(f"Fashion-MNIST file not found: {path}. {_FIX}")
    digest = _sha256(path)
    if digest != expected_sha256:
        raise ValueError(
            f"Fashion-MNIST file {path} is corrupt or was changed: its sha256 is {digest}, "
            f"expected {expected_sha256}. {_FIX}"
        )
    raw = gzip.decompress(path.read_bytes())
    if raw[:2] != b"\x00\x00" or raw[2] != 0x08:
        raise ValueError(f"{path} is not an IDX file of unsigned bytes (magic {raw[:4].hex()})")
    ndim = raw[3]
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_fashion_mnist(
    split: str = "train", root: str | os.PathLike | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Load one split of Fashion-MNIST as ``(images, labels)``.

    ``images`` is uint8 of shape ``[N, 28, 28]`` (0 = black background, 255 = white),
    ``labels`` is uint8 of shape ``[N]`` with values in ``0..9`` (see ``FASHION_MNIST_CLASSES``);
    N = 60 000 for ``split="train"`` and 10 000 for ``split="test"``. Both arrays are read-only
    views of the decompressed file (copy them before writing), which lets the result be cached:
    a second call with the same split and folder returns the same arrays without reading again.

    Raises ``FileNotFoundError`` if a file is missing and ``ValueError`` if its sha256 does not
    match; both messages name the file and say how to restore it.

    >>> X, y = load_fashion_mnist("test")
    >>> X.shape, X.dtype, y.shape, FASHION_MNIST_CLASSES[int(y[0])]
    ((10000, 28, 28), dtype('uint8'), (10000,), 'Ankle boot')
    """
    if split not in _SPLITS:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    return _load_cached(split, data_root(root).resolve())


@functools.lru_cache(maxsize=4)
def _load_cached(split: str, root: Path) -> tuple[np.ndarray, np.ndarray]:
    prefix, n = _SPLITS[split]
    folder = root / "fashion-mnist"
    images_name, labels_name = f"{prefix}-images-idx3-ubyte.gz", f"{prefix}-labels-idx1-ubyte.gz"
    images = _read_idx(folder / images_name, FASHION_MNIST_FILES[images_name])
    labels = _read_idx(folder / labels_name, FASHION_MNIST_FILES[labels_name])
    if images.shape != (n, 28, 28) or labels.shape != (n,):
        raise ValueError(
            f"unexpected shapes in {folder}: images {images.shape}, labels {labels.shape}, "
            f"expected ({n}, 28, 28) and ({n},)"
        )
    return images, labels
