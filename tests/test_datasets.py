"""Fashion-MNIST loader (numpy only): shapes, dtypes, class balance, checksum errors."""

import gzip
import shutil

import numpy as np
import pytest

from qlearn.datasets import FASHION_MNIST_CLASSES, FASHION_MNIST_FILES, data_root, load_fashion_mnist


@pytest.fixture(scope="module")
def train():
    return load_fashion_mnist("train")


@pytest.fixture(scope="module")
def test():
    return load_fashion_mnist("test")


def test_shapes_and_dtypes(train, test):
    for (images, labels), n in ((train, 60_000), (test, 10_000)):
        assert images.shape == (n, 28, 28) and images.dtype == np.uint8
        assert labels.shape == (n,) and labels.dtype == np.uint8


def test_label_counts(train, test):
    assert np.bincount(train[1], minlength=10).tolist() == [6000] * 10
    assert np.bincount(test[1], minlength=10).tolist() == [1000] * 10


def test_known_values(train, test):
    # First labels of the official release (Ankle boot, T-shirt/top, ...) and pixel statistics.
    assert train[1][:5].tolist() == [9, 0, 0, 3, 0]
    assert test[1][:5].tolist() == [9, 2, 1, 1, 6]
    assert FASHION_MNIST_CLASSES[9] == "Ankle boot" and len(FASHION_MNIST_CLASSES) == 10
    assert train[0].min() == 0 and train[0].max() == 255
    assert abs(train[0].mean() / 255 - 0.2860) < 1e-4


def test_images_are_read_only(test):
    with pytest.raises(ValueError):
        test[0][0, 0, 0] = 1


def _copy_data(tmp_path):
    dst = tmp_path / "fashion-mnist"
    shutil.copytree(data_root() / "fashion-mnist", dst)
    return dst


def test_corrupt_file_raises_a_clear_error(tmp_path):
    folder = _copy_data(tmp_path)
    path = folder / "t10k-labels-idx1-ubyte.gz"
    raw = bytearray(gzip.decompress(path.read_bytes()))
    raw[100] = (raw[100] + 1) % 10  # one label changed: still a valid gzip IDX file
    path.write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(ValueError, match=r"t10k-labels-idx1-ubyte\.gz.*sha256.*git checkout data/"):
        load_fashion_mnist("test", root=tmp_path)
    load_fashion_mnist("train", root=tmp_path)  # the other split is untouched


def test_missing_file_raises_a_clear_error(tmp_path):
    folder = _copy_data(tmp_path)
    (folder / "train-images-idx3-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match=r"train-images-idx3-ubyte\.gz.*rebuild\.sh"):
        load_fashion_mnist("train", root=tmp_path)


def test_env_var_overrides_root(tmp_path, monkeypatch):
    monkeypatch.setenv("QLEARN_DATA", str(tmp_path))
    assert data_root() == tmp_path
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        load_fashion_mnist("test")


def test_bad_split():
    with pytest.raises(ValueError, match="split must be 'train' or 'test', got 'val'"):
        load_fashion_mnist("val")


def test_checksums_match_the_readme():
    readme = (data_root() / "README.md").read_text()
    for name, digest in FASHION_MNIST_FILES.items():
        assert f"{digest}  fashion-mnist/{name}" in readme
