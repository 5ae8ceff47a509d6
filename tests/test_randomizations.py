"""One record per randomization (rethinkgen_tf.ops.randomizations): every consumer's list is
derived from the records, and one dispatch carries out a Plan."""
import dataclasses

import numpy as np
import pytest

from rethinkgen_tf import cli, grids, plots
from rethinkgen_tf.data import RANDOMIZATIONS, DataConfig
from rethinkgen_tf.data import randomize as host
from rethinkgen_tf.ops import _checks, native_numpy, randomizations
from rethinkgen_tf.ops.randomizations import (
    ALL,
    BY_NAME,
    IMAGE_KINDS,
    NAMES,
    TARGETS,
    Plan,
    apply_images,
    apply_labels,
    plan,
)


def test_every_randomization_has_one_record():
    assert NAMES == ("none", "labels", "shuffled_pixels", "random_pixels", "gaussian")
    assert len(set(NAMES)) == len(ALL) and set(BY_NAME) == set(NAMES)
    for r in ALL:
        assert r.target in TARGETS
        assert r.label and r.label != r.name or r.name == "none"
        if r.target == "none":
            assert r.op is None and r.call is None
        else:
            assert callable(getattr(native_numpy, r.op))   # the op it names exists
        if r.op == "permute_pixels":
            assert r.pixel_mode in _checks.PIXEL_MODES    # a mode the op takes
        else:
            assert r.pixel_mode is None
        assert (r.call is not None) == (r.target == "images")
    # the paper's pairs: one shared permutation, and per-example ones
    assert {r.name: r.pixel_mode for r in ALL if r.pixel_mode} == {
        "shuffled_pixels": "shared", "random_pixels": "per_example"}


def test_every_consumer_reads_the_records():
    from rethinkgen_tf.ops import layers
    assert RANDOMIZATIONS == NAMES                                # DataConfig's choices
    assert grids.FIG1_RANDOMIZATIONS == NAMES                     # Figure 1a's runs
    assert plots.LABELS == {r.name: r.label for r in ALL}         # the legends
    assert host.IMAGE_KINDS == IMAGE_KINDS == ("none",) + tuple(
        r.name for r in ALL if r.target == "images")
    assert set(layers.KINDS) == {r.name for r in ALL if r.op}     # the on-device layer
    from absl import flags
    if "randomize" not in flags.FLAGS:
        cli.define(("cifar10",), "inception")
    flag = flags.FLAGS["randomize"]
    assert tuple(flag.parser.enum_values) == NAMES                # --randomize
    for r in ALL:
        assert f"{r.name} ({r.label})" in flag.help


def test_the_records_drive_the_plan():
    for r in ALL:
        c = DataConfig(randomize=r.name, seed=5, test_images="auto")
        train, test = plan(c, "train"), plan(c, "test")
        if r.target != "images":
            assert train.kind == test.kind == "none"
            continue
        assert train.kind == r.name and train.seed == 5 and train.mode == r.pixel_mode
        assert train.randomization is r
        assert (test.kind == r.name) == r.test_by_default
        if test.kind != "none":
            assert (test.seed == 5) == r.shares_test_stream


class Recorder:
    """An `ops` module that records its calls."""

    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        def op(*args, **kwargs):
            self.calls.append((name, args, kwargs))
            return name
        return op


def test_one_dispatch_calls_the_records_op():
    idx, x = np.arange(3), np.zeros((3, 4, 4, 1), np.uint8)
    for r in ALL:
        if r.target != "images":
            continue
        ops = Recorder()
        p = plan(DataConfig(randomize=r.name, seed=9), "train")
        out = apply_images(p, ops, idx, images=x, shape=(4, 4, 1), stats=([1.0], [2.0]))
        assert out == r.op and [c[0] for c in ops.calls] == [r.op]
        name, args, kwargs = ops.calls[0]
        if r.op == "permute_pixels":    # (images, indices, seed, mode=, unit=)
            assert args[0] is x and args[1] is idx and args[2] == 9
            assert kwargs == {"mode": r.pixel_mode, "unit": "position"}
        else:                           # (indices, seed, shape, mean, std)
            assert args[0] is idx and args[1] == 9 and args[2] == (4, 4, 1)
            assert args[3:] == ([1.0], [2.0])
    ops = Recorder()
    assert apply_images(Plan("train"), ops, idx, images=x) is x and not ops.calls
    with pytest.raises(ValueError, match="stats"):
        apply_images(plan(DataConfig(randomize="gaussian"), "train"), ops, idx)
    p = plan(DataConfig(corrupt=0.5, seed=3), "train")
    y = np.zeros(3, np.int64)
    assert apply_labels(p, ops, y, idx, 10) == "corrupt_labels"
    assert ops.calls[-1] == ("corrupt_labels", (y, idx, 0.5, 10, 3), {"mode": "uniform"})
    assert apply_labels(Plan("train"), ops, y, idx, 10) is y


def test_a_new_record_reaches_plan_and_dispatch(monkeypatch):
    """Adding a randomization is a record: plan() and the dispatch read it, nothing else."""
    def flip(p, ops, indices, images, shape, stats, **kw):
        return images[:, ::-1]
    new = randomizations.Randomization("flipped", "images", "flipped", op="permute_pixels",
                                       test_by_default=False, call=flip)
    monkeypatch.setitem(BY_NAME, "flipped", new)
    c = dataclasses.replace(DataConfig(), randomize="none")
    object.__setattr__(c, "randomize", "flipped")    # DataConfig's choices are fixed at import
    p = plan(c, "train")
    assert p.kind == "flipped" and p.randomization is new and plan(c, "test").kind == "none"
    x = np.arange(12).reshape(1, 3, 4, 1)
    np.testing.assert_array_equal(apply_images(p, None, np.arange(1), images=x), x[:, ::-1])
