"""The datasets, one record each: what is known of a dataset before reading it, and how a
local copy of it is read.

    BY_NAME["mnist"].image_shape     # (28, 28, 1)
    BY_NAME["cifar10"].reader        # "cifar10": pickle or binary batches, or class folders

DataConfig's choices (`NAMES`), the sizes its crop is checked against, the readers'
class counts and names (data.sources), the advice on getting a local copy, and the
shapes a model is built for before the data is read (user_model.data_shape) are views
of these records.  Adding a dataset is a record here (and its reader in data.sources
if it needs a new one).  This module imports nothing.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

READERS = ("cifar10", "idx", "class_folders", "npz", "imagenet")


@dataclasses.dataclass(frozen=True)
class Dataset:
    """One dataset.

    name: DataConfig.dataset.
    reader: how a local copy is read: "cifar10" (pickle or binary batches, or class
      folders), "idx" (the four IDX files of MNIST), "class_folders"
      (<dir>/{train,test}/<class>/<image>), "npz" (a .npz of arrays), "imagenet"
      (streamed TFRecord shards or tensorflow-datasets).
    image_size, channels: its square images' side and channels, where known before
      reading (None: read them).
    num_classes, class_names: where known before reading.
    num_train, num_test: the splits' sizes, where known before reading.
    tfds_host: the server tensorflow-datasets downloads it from (None: not through tfds).
    how_to: how to get a local copy, for error messages.
    crop: the paper's center crop of its images (CIFAR-10: 28), the default of --crop
      and of the Rademacher estimates' inputs; None: the images at their own size.
    normalization: how the paper's experiments normalize its pixels: "standardize"
      (per image) or "scale" (to [0, 1]).
    """
    name: str
    reader: str
    image_size: Optional[int] = None
    channels: Optional[int] = None
    num_classes: Optional[int] = None
    class_names: Optional[tuple] = None
    num_train: Optional[int] = None
    num_test: Optional[int] = None
    tfds_host: Optional[str] = None
    how_to: Optional[str] = None
    crop: Optional[int] = None
    normalization: str = "standardize"

    @property
    def in_memory(self):
        """Whether it is read whole into arrays (data.sources.load_arrays); else streamed or given."""
        return self.reader in ("cifar10", "idx", "class_folders")

    @property
    def image_shape(self):
        """[H, W, C] of its images before any crop, or None where reading tells."""
        if self.image_size is None or self.channels is None:
            return None
        return (self.image_size, self.image_size, self.channels)


_IDX_HOW_TO = ("download the four IDX .gz files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
               "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz) into one directory and pass --data_dir=<it>")

ALL = (
    Dataset("cifar10", "cifar10", image_size=32, channels=3, num_classes=10,
            class_names=("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                         "truck"),
            num_train=50_000, num_test=10_000, tfds_host="https://www.cs.toronto.edu/", crop=28,
            how_to="download https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz, extract it and pass "
                   "--data_dir=<dir containing cifar-10-batches-py> (the binary version cifar-10-batches-bin "
                   "and class folders <dir>/train/<class>/*.png, <dir>/test/<class>/*.png work too)"),
    Dataset("mnist", "idx", image_size=28, channels=1, num_classes=10,
            class_names=tuple(str(i) for i in range(10)), num_train=60_000, num_test=10_000,
            tfds_host="https://storage.googleapis.com/", how_to=_IDX_HOW_TO, normalization="scale"),
    Dataset("fashion_mnist", "idx", image_size=28, channels=1, num_classes=10,
            class_names=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                         "Bag", "Ankle boot"),
            num_train=60_000, num_test=10_000,
            tfds_host="http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/", normalization="scale",
            how_to="install them with `apt-get install dataset-fashion-mnist` and pass "
                   "--data_dir=/usr/share/datasets/fashion-mnist (or any directory with the four IDX .gz files)"),
    # ImageNet: 3 channels at DataConfig.image_size (default 299), DataConfig.num_classes (default 1000)
    Dataset("imagenet", "imagenet", channels=3),
    Dataset("folder", "class_folders"),
    Dataset("numpy", "npz"),
)
BY_NAME = {d.name: d for d in ALL}
NAMES = tuple(BY_NAME)
