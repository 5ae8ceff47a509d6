"""One randomization plan: `data.randomize.plan(config, split)` decides what a DataConfig does to a
split, and its three consumers (the in-memory pipeline, streamed ImageNet and the in-model layer
`layers.for_data_config`) serve exactly that, for every combination of the settings."""
import itertools

import numpy as np
import pytest
import tensorflow as tf
from imagenet_shards import write_shards

from rethinkgen_tf.data import RANDOMIZATIONS, DataConfig, load
from rethinkgen_tf.data.randomize import Plan, plan
from rethinkgen_tf.ops import layers
from rethinkgen_tf.ops import reference as R

SEED, K, SIZE = 9, 3, 16
N, NT = 12, 6
SHARDS = {"train-00000-of-00002": 4, "train-00001-of-00002": 3, "validation-00000-of-00001": 3}
PIXELS = ("shuffled_pixels", "random_pixels")


def combinations():
    """Every valid (randomize, corrupt, test_images, pixel_unit); the unit varies for pixel kinds only."""
    for r, c, t in itertools.product(RANDOMIZATIONS, (0.0, 0.5), ("auto", "original", "randomized")):
        if r == "labels" and c:
            continue
        for unit in (("position", "value") if r in PIXELS else ("position",)):
            yield r, c, t, unit


COMBINATIONS = list(combinations())


def ids(combo):
    return "-".join(map(str, combo))


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RETHINKGEN_DATA_CACHE", str(tmp_path / "cache"))


# ----------------------------------------------------------------------------- the plan itself
# The rules of docs/data.md, stated as a table: is the test split's image stream randomized?
TEST_IMAGES_RANDOMIZED = {
    ("shuffled_pixels", "auto"): True, ("shuffled_pixels", "original"): False, ("shuffled_pixels", "randomized"): True,
    ("random_pixels", "auto"): False, ("random_pixels", "original"): False, ("random_pixels", "randomized"): True,
    ("gaussian", "auto"): True, ("gaussian", "original"): False, ("gaussian", "randomized"): True,
}


@pytest.mark.parametrize("label_mode", ["uniform", "permute"])
@pytest.mark.parametrize("split", ["train", "test"])
@pytest.mark.parametrize("combo", COMBINATIONS, ids=ids)
def test_plan_follows_the_documented_rules(combo, split, label_mode):
    r, c, t, unit = combo
    cfg = DataConfig(dataset="numpy", randomize=r, corrupt=c, test_images=t, pixel_unit=unit,
                     label_mode=label_mode, seed=SEED)
    p = plan(cfg, split)
    assert isinstance(p, Plan) and p.split == split
    with pytest.raises(Exception):
        p.seed = 0  # frozen
    # labels: the training split only, with probability 1 for "labels", p for corrupt=p
    prob = 1.0 if r == "labels" else c
    if split == "train" and prob > 0:
        assert (p.label_prob, p.label_mode, p.label_seed) == (prob, label_mode, SEED)
    else:
        assert (p.label_prob, p.label_mode, p.label_seed) == (0.0, None, None)
    # images
    randomized = r in ("shuffled_pixels", "random_pixels", "gaussian") and (
        split == "train" or TEST_IMAGES_RANDOMIZED[r, t])
    if not randomized:
        assert (p.kind, p.seed, p.mode, p.unit) == ("none", None, None, None)
        return
    assert p.kind == r
    want_seed = R.derive_seed(SEED, "test") if split == "test" and r != "shuffled_pixels" else SEED
    assert p.seed == want_seed
    want_mode = {"shuffled_pixels": "shared", "random_pixels": "per_example"}.get(r)
    assert (p.mode, p.unit) == (want_mode, unit if want_mode else None)


def test_plan_rejects_unknown_split():
    with pytest.raises(ValueError, match="split"):
        plan(DataConfig(), "validation")


# ----------------------------------------------------------------------------- its consumers
def apply_plan(p, x, idx, labels, stats):
    """What the plan says a split's images and labels become, with the NumPy reference of the ops."""
    if p.kind == "none":
        images = np.asarray(x, np.float32)
    elif p.mode is not None:
        images = R.permute_pixels(x, idx, p.seed, p.mode, p.unit).astype(np.float32)
    else:
        images = R.gaussian_images(idx, p.seed, x.shape[1:], *stats)
    if p.label_prob > 0:
        labels = R.corrupt_labels(labels, idx, p.label_prob, K, p.label_seed, p.label_mode)
    return images, np.asarray(labels)


def collect(ds):
    return [np.concatenate(p) for p in zip(*[[t.numpy() for t in b] for b in ds])]


def check_layer(cfg, split, x, idx, stats, want):
    """layers.for_data_config carries out the same plan: kind, seed stream, unit, and the same images."""
    p = plan(cfg, split)
    layer = layers.for_data_config(cfg, split, image_shape=x.shape[1:], stats=stats)
    if p.kind == "none":
        assert layer is None, (cfg, split)
        return
    assert (layer.kind, layer.seed) == (p.kind, p.seed)
    if p.mode is not None:
        assert layer.unit == p.unit
    got = layer(tf.constant(idx)) if p.kind == "gaussian" else layer((tf.constant(x), tf.constant(idx)))
    np.testing.assert_array_equal(np.asarray(got, np.float32), want, err_msg=f"layer {split}")


@pytest.fixture(scope="module")
def arrays():
    rng = np.random.default_rng(1)
    return (rng.integers(0, 256, (N, 8, 8, 3), dtype=np.uint8), np.tile(np.arange(K), N // K),
            rng.integers(0, 256, (NT, 8, 8, 3), dtype=np.uint8), np.tile(np.arange(K), NT // K))


@pytest.mark.parametrize("combo", COMBINATIONS, ids=ids)
def test_pipeline_and_layer_serve_the_plan(arrays, combo):
    r, c, t, unit = combo
    cfg = DataConfig(dataset="numpy", randomize=r, corrupt=c, test_images=t, pixel_unit=unit, seed=SEED,
                     crop=None, standardize=False, batch_size=5)
    data = load(cfg, arrays)
    for split, (x, y), served in (("train", arrays[:2], collect(data.train_eval)[:2]),
                                  ("test", arrays[2:], collect(data.test))):
        idx = np.arange(len(y), dtype=np.int64)
        want_x, want_y = apply_plan(plan(cfg, split), x, idx, y, data.stats)
        np.testing.assert_allclose(served[0] * 255, want_x, rtol=1e-6, atol=1e-4, err_msg=split)
        np.testing.assert_array_equal(served[1], want_y, err_msg=split)
        check_layer(cfg, split, x, idx, data.stats, want_x)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    d = tmp_path_factory.mktemp("imagenet")
    return str(d), write_shards(d, SHARDS, K)


def resized(encoded):
    img = tf.cast(tf.io.decode_jpeg(encoded, channels=3), tf.float32)
    return tf.image.resize(tf.image.central_crop(img, 0.875)[None], [SIZE, SIZE])[0].numpy()


@pytest.mark.parametrize("combo", COMBINATIONS, ids=ids)
def test_imagenet_serves_the_plan(shards, combo):
    r, c, t, unit = combo
    d, rec = shards
    cfg = DataConfig(dataset="imagenet", data_dir=d, image_size=SIZE, num_classes=K, batch_size=3,
                     standardize=False, randomize=r, corrupt=c, test_images=t, pixel_unit=unit, seed=SEED)
    data = load(cfg)
    for split, records, served in (("train", rec["train"], collect(data.train_eval)[:2]),
                                   ("test", rec["validation"], collect(data.test))):
        idx = np.array([i for i, _, _ in records], np.int64)
        x = np.stack([resized(e) for _, e, _ in records])
        want_x, want_y = apply_plan(plan(cfg, split), x, idx, [y for _, _, y in records], data.stats)
        np.testing.assert_allclose(served[0] * 255, want_x, rtol=1e-4, atol=1e-3, err_msg=split)
        np.testing.assert_array_equal(served[1], want_y, err_msg=split)
