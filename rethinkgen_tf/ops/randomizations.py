"""The randomization test's randomizations, one record each, and the plan that carries one out.

    BY_NAME["shuffled_pixels"]        # Randomization(name="shuffled_pixels", target="images", ...)
    p = plan(data_config, "train")    # Plan: what a DataConfig does to its training split
    x = apply_images(p, ops, indices, images=x)   # Plan -> op call, the one dispatch
    y = apply_labels(p, ops, y, indices, num_classes)

Every consumer reads the records: DataConfig's choices and the --randomize flags
(`NAMES`), the in-memory pipeline (`data.randomize`), the streamed ImageNet
pipeline (`data.imagenet`), the on-device layer (`ops.layers`), Figure 1's grid
(`grids.FIG1_RANDOMIZATIONS`) and the figures' legends (`plots.LABELS`).  Adding a
randomization is one record here (and its op, where it needs a new one).

Seeds and streams (docs/data.md):
- train labels: corrupt_labels(y, idx, p, K, seed, label_mode); test labels never change.
- shuffled_pixels: one permutation from `seed` (mode "shared"), on train and test.
- random_pixels: per-example permutations from `seed` (train) and
  derive_seed(seed, "test") (test, only with test_images="randomized").
- gaussian: images from `seed` (train) and derive_seed(seed, "test") (test),
  with the per-channel mean and std of the training images (in [0, 255]).

`ops` in the dispatch is any module with the ops' signatures: `rethinkgen_tf.ops`,
`ops.tf_ops`, `ops.native_numpy`.  This module imports NumPy only (through
`ops.reference`), not TensorFlow and nothing of the data layer.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Optional

from rethinkgen_tf.ops.reference import derive_seed

SPLITS = ("train", "test")
TARGETS = ("none", "labels", "images")


def _permute(p, ops, indices, images, shape, stats, **op_kw):
    return ops.permute_pixels(images, indices, p.seed, mode=p.mode, unit=p.unit, **op_kw)


def _gaussian(p, ops, indices, images, shape, stats, **op_kw):
    if shape is None or stats is None:
        raise ValueError("gaussian needs the image shape and stats=(mean, std) of the training images")
    mean, std = stats
    return ops.gaussian_images(indices, p.seed, tuple(shape), mean, std, **op_kw)


@dataclasses.dataclass(frozen=True)
class Randomization:
    """One randomization of the test: what it changes, how, and what the figures call it.

    name: the --randomize value (DataConfig.randomize).
    target: what it changes: "none" | "labels" | "images".
    label: its name in figures and tables.
    op: the rethinkgen_tf.ops function that carries it out (None: nothing to do).
    pixel_mode: the permute_pixels mode ("shared" | "per_example"), pixel kinds only.
    shares_test_stream: the test split reuses the training seed (one permutation
      for both splits); otherwise the test stream is derive_seed(seed, "test").
    test_by_default: test_images="auto" randomizes the test images too.
    call: (plan, ops, indices, images, shape, stats, **op_kw) -> the randomized
      images (image randomizations; labels go through `apply_labels`).
    """
    name: str
    target: str
    label: str
    op: Optional[str] = None
    pixel_mode: Optional[str] = None
    shares_test_stream: bool = False
    test_by_default: bool = True
    call: Optional[Callable] = dataclasses.field(default=None, compare=False, repr=False)

    @property
    def generates_images(self):
        """Whether its images come from the indices alone (no source images, but the
        training images' per-channel statistics)."""
        return self.op == "gaussian_images"


ALL = (
    Randomization("none", "none", "true labels"),
    Randomization("labels", "labels", "random labels", op="corrupt_labels"),
    Randomization("shuffled_pixels", "images", "shuffled pixels", op="permute_pixels",
                  pixel_mode="shared", shares_test_stream=True, call=_permute),
    # per-example permutations of test images share nothing with training: "auto" keeps them
    Randomization("random_pixels", "images", "random pixels", op="permute_pixels",
                  pixel_mode="per_example", test_by_default=False, call=_permute),
    Randomization("gaussian", "images", "Gaussian", op="gaussian_images", call=_gaussian),
)
BY_NAME = {r.name: r for r in ALL}
NAMES = tuple(BY_NAME)                                                  # the --randomize choices
IMAGE_KINDS = ("none",) + tuple(r.name for r in ALL if r.target == "images")  # Plan.kind values
LABELS = {r.name: r.label for r in ALL}                                 # figure legends


@dataclasses.dataclass(frozen=True)
class Plan:
    """What the randomization test does to one split of a DataConfig.

    kind: the image randomization, "none" (the images as they are) or the name of
      a Randomization with target "images".
    seed: the seed of the image stream (None for kind "none").
    mode: the permute_pixels mode, "shared" | "per_example" (pixel kinds only).
    unit: the permute_pixels unit, "position" | "value" (pixel kinds only).
    label_prob, label_mode, label_seed: the label corruption (training split
      only; 0.0 / None where labels stay as they are).
    """
    split: str
    kind: str = "none"
    seed: Optional[int] = None
    mode: Optional[str] = None
    unit: Optional[str] = None
    label_prob: float = 0.0
    label_mode: Optional[str] = None
    label_seed: Optional[int] = None

    @property
    def randomization(self) -> Randomization:
        """The record of this plan's image randomization ("none" included)."""
        return BY_NAME[self.kind]


def plan(config, split) -> Plan:
    """The Plan of `config` (a DataConfig) for split "train" or "test"; see the module docstring.

    Test images: test_images="original" never randomizes them; "randomized"
    always does; "auto" does where the randomization's test_by_default is set
    (not for random_pixels).  Test streams use derive_seed(seed, "test"), except
    for a randomization that shares its stream with training (shuffled_pixels).
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    test = split == "test"
    labels = {}
    if not test and config.label_prob > 0:
        labels = dict(label_prob=config.label_prob, label_mode=config.label_mode, label_seed=config.seed)
    r = BY_NAME[config.randomize]
    if r.target != "images" or (test and (config.test_images == "original" or (
            config.test_images == "auto" and not r.test_by_default))):
        return Plan(split, **labels)
    seed = derive_seed(config.seed, "test") if test and not r.shares_test_stream else config.seed
    unit = config.pixel_unit if r.pixel_mode else None
    return Plan(split, r.name, seed, r.pixel_mode, unit, **labels)


def apply_images(p, ops, indices, images=None, shape=None, stats=None, **op_kw):
    """The images of plan p's split: its randomization's op call on `indices` (and
    `images`, for the permutations; `shape` [H, W, C] and stats=(mean, std) for
    generated ones), or `images` as they are where p randomizes none.  op_kw goes to
    the op (e.g. dtype)."""
    r = p.randomization
    if r.call is None:
        return images
    return r.call(p, ops, indices, images, shape, stats, **op_kw)


def apply_labels(p, ops, labels, indices, num_classes):
    """The labels of plan p's split: ops.corrupt_labels where p corrupts them, else `labels`."""
    if p.label_prob == 0.0:
        return labels
    return ops.corrupt_labels(labels, indices, p.label_prob, num_classes, p.label_seed,
                              mode=p.label_mode)
