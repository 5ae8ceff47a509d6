"""One record per dataset (rethinkgen_tf.data.datasets): DataConfig's choices, the crop
check, the readers' tables and the shapes known before reading are views of the records."""
import pytest

from rethinkgen_tf import user_model
from rethinkgen_tf.data import DATASETS, IMAGE_SIZES, DataConfig, DataError, datasets, sources
from rethinkgen_tf.data.datasets import ALL, BY_NAME, READERS


def test_every_dataset_has_one_record():
    assert DATASETS == datasets.NAMES == ("cifar10", "mnist", "fashion_mnist", "imagenet", "folder", "numpy")
    for d in ALL:
        assert d.reader in READERS
        if d.class_names is not None:
            assert len(d.class_names) == d.num_classes == len(set(d.class_names))
        if d.tfds_host is not None:
            assert d.in_memory and d.how_to and d.tfds_host.startswith("http")


def test_the_tables_are_views_of_the_records():
    assert IMAGE_SIZES == {d.name: d.image_size for d in ALL if d.image_size}
    assert sources.SMALL_DATASETS == ("cifar10", "mnist", "fashion_mnist", "folder")
    assert sources.NUM_CLASSES == {"cifar10": 10, "mnist": 10, "fashion_mnist": 10}
    assert set(sources.TFDS_HOSTS) == set(sources._HOW_TO) == {"cifar10", "mnist", "fashion_mnist"}
    assert sources.CIFAR10_CLASSES == list(BY_NAME["cifar10"].class_names)
    assert sources.FASHION_MNIST_CLASSES[0] == "T-shirt/top"


@pytest.mark.parametrize("name", ["cifar10", "mnist", "fashion_mnist"])
def test_crop_and_shapes_come_from_the_record(name):
    d = BY_NAME[name]
    with pytest.raises(DataError, match=f"{d.image_size}x{d.image_size}"):
        DataConfig(dataset=name, crop=d.image_size + 1)
    c = DataConfig(dataset=name, crop=d.image_size - 4)
    shape, k, n_train, n_test = user_model.data_shape(c)
    assert shape == (d.image_size - 4, d.image_size - 4, d.channels)
    assert (k, n_train, n_test) == (d.num_classes, d.num_train, d.num_test)
    assert user_model.data_shape(DataConfig(dataset=name, crop=None))[0] == d.image_shape


def test_the_papers_crop_is_the_records():
    from rethinkgen_tf import scales, theory
    assert {d.name: d.crop for d in ALL if d.crop} == {"cifar10": 28}
    assert theory.RADEMACHER_CROP == {"cifar10": 28, "mnist": None, "fashion_mnist": None}
    assert scales.INPUT_DIM == 28 * 28 * 3 and scales.CIFAR10_TRAIN_SIZE == 50_000
    assert {d.normalization for d in ALL} <= {"standardize", "scale"}
