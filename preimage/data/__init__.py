"""Datasets: MNIST (IDX files, checksums, download), CIFAR-10 (binary batches), SVHN (.mat),
scikit-learn's 8x8 digits, Adversarial Spheres, shiftMNIST and its textures, imaging mass
spectrometry (imzML, synthetic TMAs, the averagine isotope model), derived subsets, a registry
that loads any of them by name, and the 3x32x32 embedding of small images.

References:
    Jacobsen et al. (2019), Excessive Invariance Causes Adversarial Vulnerability, section 4 and
    appendices A, D.1, D.2 (the spheres and MNIST experiments).
"""

from __future__ import annotations

from preimage.data.averagine import averagine_envelope, isotope_pattern_bins
from preimage.data.cifar import (
    CIFAR10_CLASSES,
    CIFAR10_FILES,
    CIFAR100_FILES,
    cifar10_dir,
    cifar100_dir,
    load_cifar10,
    load_cifar100,
)
from preimage.data.digits import DIGITS_MAX_INTENSITY, load_digits
from preimage.data.embed import embed_image, unembed_image
from preimage.data.ims import ImsDataset, load_imzml, write_imzml
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
from preimage.data.preprocess import NTSC_WEIGHTS, ZCAWhitener, grayscale
from preimage.data.registry import DATASETS, SPHERES_DEFAULT_N, DatasetSplit, load_dataset
from preimage.data.shiftmnist import (
    SHIFTMNIST_SPLITS,
    SHIFTMNIST_VARIANTS,
    load_shiftmnist,
    make_shiftmnist,
)
from preimage.data.spheres import sample_spheres, sphere_label
from preimage.data.subsets import class_subset, load_train_test, mnist_3v7, random_labels, subset
from preimage.data.svhn import SVHN_FILES, load_svhn
from preimage.data.textures import (
    TextureBank,
    load_dtd_textures,
    load_skimage_textures,
    load_textures,
)
from preimage.data.tma_synthetic import TMA_PRESETS, SyntheticTmaConfig, synthetic_tma, tof_edges

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR10_FILES",
    "CIFAR100_FILES",
    "DATASETS",
    "DATA_ENV_VAR",
    "DIGITS_MAX_INTENSITY",
    "MNIST_FILES",
    "MNIST_MIRRORS",
    "MNIST_SHA256",
    "NTSC_WEIGHTS",
    "SHIFTMNIST_SPLITS",
    "SHIFTMNIST_VARIANTS",
    "SPHERES_DEFAULT_N",
    "SVHN_FILES",
    "TMA_PRESETS",
    "DatasetSplit",
    "ImsDataset",
    "SyntheticTmaConfig",
    "TextureBank",
    "ZCAWhitener",
    "averagine_envelope",
    "cifar10_dir",
    "cifar100_dir",
    "class_subset",
    "data_root",
    "dataset_dir",
    "download_mnist",
    "embed_image",
    "grayscale",
    "isotope_pattern_bins",
    "load_cifar10",
    "load_cifar100",
    "load_dataset",
    "load_digits",
    "load_dtd_textures",
    "load_imzml",
    "load_mnist",
    "load_shiftmnist",
    "load_skimage_textures",
    "load_svhn",
    "load_textures",
    "load_train_test",
    "make_shiftmnist",
    "mnist_3v7",
    "mnist_dir",
    "random_labels",
    "read_idx",
    "sample_spheres",
    "sphere_label",
    "subset",
    "synthetic_tma",
    "tof_edges",
    "unembed_image",
    "write_imzml",
]
