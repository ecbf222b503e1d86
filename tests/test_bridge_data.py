"""qlearn.bridge.data: the torch Dataset/DataLoader over Fashion-MNIST, and the batched augmentation."""

import subprocess
import sys

import torch

from qlearn.bridge.data import MEAN, STD, FashionMNIST, RandomCropFlip, make_loader, train_transform
from qlearn.datasets import load_fashion_mnist


def test_dataset_is_normalised_and_matches_numpy():
    ds = FashionMNIST("test")
    images, labels = load_fashion_mnist("test")
    assert len(ds) == 10_000 and ds.classes[9] == "Ankle boot"
    x, y = ds[123]
    assert x.shape == (1, 28, 28) and x.dtype == torch.float32 and y == int(labels[123])
    expected = (torch.tensor(images[123]).float() / 255 - MEAN) / STD
    torch.testing.assert_close(x[0], expected)


def test_train_statistics_are_the_documented_ones():
    data = FashionMNIST("train").data
    assert abs(float(data.mean())) < 1e-3  # (mean - MEAN) / STD with MEAN rounded to 4 digits
    assert abs(float(data.std()) - 1) < 1e-3


def test_loader_order_is_seeded():
    def first_labels(seed):
        return next(iter(make_loader("train", 64, augment=False, seed=seed)))[1]

    assert torch.equal(first_labels(1), first_labels(1))
    assert not torch.equal(first_labels(1), first_labels(2))


def test_test_loader_is_in_file_order_without_augmentation():
    xb, yb = next(iter(make_loader("test", 5)))
    ds = FashionMNIST("test")
    assert torch.equal(xb, ds.data[:5]) and torch.equal(yb, ds.targets[:5])


def test_augmentation_is_reproducible_with_torch_manual_seed():
    def first_batch():
        torch.manual_seed(0)
        return next(iter(make_loader("train", 32, seed=0)))[0]

    a, b = first_batch(), first_batch()
    assert torch.equal(a, b)
    plain = next(iter(make_loader("train", 32, seed=0, augment=False)))[0]
    assert not torch.equal(a, plain)


def test_random_crop_flip_gives_a_shifted_or_mirrored_crop():
    x = torch.randn(16, 1, 28, 28)
    out = RandomCropFlip(pad=2)(x, torch.Generator().manual_seed(3))
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    found = set()
    for i in range(len(x)):
        crops = {(dy, dx): padded[i, :, dy : dy + 28, dx : dx + 28] for dy in range(5) for dx in range(5)}
        matches = [
            (dy, dx, flip)
            for (dy, dx), crop in crops.items()
            for flip in (False, True)
            if torch.equal(out[i], crop.flip(-1) if flip else crop)
        ]
        assert matches, f"image {i} is not a crop of its padded original"
        found.update(m[2] for m in matches)
    assert found == {False, True}  # both flipped and unflipped images occur


def test_torchvision_transform_has_the_same_output_shape():
    x = torch.randn(1, 28, 28)
    assert train_transform()(x).shape == x.shape


def test_import_qlearn_does_not_import_torch():
    code = (
        "import sys, qlearn, qlearn.datasets\n"
        "print(sorted(m for m in ('torch', 'torchvision') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
