"""Datasets: MNIST (IDX files, checksums, download), CIFAR-10 (binary batches), scikit-learn's
8x8 digits, Adversarial Spheres, shiftMNIST and its textures, and a registry that loads any of
them by name.

References:
    Jacobsen et al. (2019), Excessive Invariance Causes Adversarial Vulnerability, section 4 and
    appendices A, D.1, D.2 (the spheres and MNIST experiments).
"""

from __future__ import annotations

from preimage.data.cifar import CIFAR10_CLASSES, CIFAR10_FILES, cifar10_dir, load_cifar10
from preimage.data.digits import DIGITS_MAX_INTENSITY, load_digits
from preimage.data.mnist import (
    MNIST_FILES,
    MNIST_MIRRORS,
    MNIST_SHA256,
    download_mnist,
    load_mnist,
    mnist_dir,
    read_idx,
)
from preimage.data.paths import DATA_ENV_VAR, data_root, dataset_dir
from preimage.data.registry import DATASETS, SPHERES_DEFAULT_N, DatasetSplit, load_dataset
from preimage.data.shiftmnist import (
    SHIFTMNIST_SPLITS,
    SHIFTMNIST_VARIANTS,
    load_shiftmnist,
    make_shiftmnist,
)
from preimage.data.spheres import sample_spheres, sphere_label
from preimage.data.textures import (
    TextureBank,
    load_dtd_textures,
    load_skimage_textures,
    load_textures,
)

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR10_FILES",
    "DATASETS",
    "DATA_ENV_VAR",
    "DIGITS_MAX_INTENSITY",
    "MNIST_FILES",
    "MNIST_MIRRORS",
    "MNIST_SHA256",
    "SHIFTMNIST_SPLITS",
    "SHIFTMNIST_VARIANTS",
    "SPHERES_DEFAULT_N",
    "DatasetSplit",
    "TextureBank",
    "cifar10_dir",
    "data_root",
    "dataset_dir",
    "download_mnist",
    "load_cifar10",
    "load_dataset",
    "load_digits",
    "load_dtd_textures",
    "load_mnist",
    "load_shiftmnist",
    "load_skimage_textures",
    "load_textures",
    "make_shiftmnist",
    "mnist_dir",
    "read_idx",
    "sample_spheres",
    "sphere_label",
]
