"""Data layer: sources, the randomization test's transforms, the paper's preprocessing.

    data = load(DataConfig(dataset="cifar10", data_dir="~/cifar", randomize="labels"))
    model.fit(data.train, epochs=...)

The randomization is a fixed function of (seed, example index): the same
config gives the same labels, permutations and Gaussian images in every epoch,
run and process.  See docs/data.md for the index orders and what each setting
does to the test set.
"""
from __future__ import annotations

from .config import AUGMENTATIONS, DATASETS, IMAGE_SIZES, PERMUTE_VERSION, RANDOMIZATIONS, Data, DataConfig, check_crop  # noqa: F401
from .sources import DataError, load_arrays  # noqa: F401


def load(config: DataConfig, arrays=None) -> Data:
    """Build the pipelines.  arrays=(x_train, y_train, x_test, y_test) for dataset="numpy"."""
    if config.dataset == "imagenet":
        from .imagenet import load_imagenet
        return load_imagenet(config)
    from .pipeline import load_small
    return load_small(config, arrays)
