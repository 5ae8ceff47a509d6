"""--precision=bf16: bfloat16 compute with float32 weights and logits, part of a run's
identity, available to single runs and suites; AlexNet's LRN stays in float32."""
import dataclasses

import keras
import numpy as np
import pytest
from tiny import ARRAYS, DATA

from rethinkgen_tf import grids, models, suite
from rethinkgen_tf.data import load
from rethinkgen_tf.train import PRECISIONS, TrainConfig, run


def test_precision_values_are_checked():
    assert PRECISIONS == ("float32", "bf16")
    assert TrainConfig(model="mlp_1x64").precision == "float32"
    with pytest.raises(ValueError, match="precision must be one of"):
        TrainConfig(model="mlp_1x64", precision="fp8")
    with pytest.raises(ValueError, match="pass one of them"):
        TrainConfig(model="mlp_1x64", precision="bf16", mixed_precision=True)


def test_alexnet_under_bf16_keeps_lrn_and_logits_in_float32():
    policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        m = models.build("alexnet")
    finally:
        keras.config.set_dtype_policy(policy)
    lrn = [la for la in m.layers if isinstance(la, models.LocalResponseNormalization)]
    convs = [la for la in m.layers if isinstance(la, keras.layers.Conv2D)]
    assert len(lrn) == 2 and all(la.compute_dtype == "float32" for la in lrn)
    assert convs and all(la.compute_dtype == "bfloat16" for la in convs)
    assert all(w.dtype == "float32" for w in m.weights)
    out = m(np.zeros((2, 28, 28, 3), np.float32), training=True)
    assert out.dtype == "float32"  # and a training-mode pass runs on CPU (no bf16 LRN kernel)


def test_bf16_run_trains_records_its_precision_and_is_another_run(tmp_path):
    data = load(DATA, ARRAYS)
    cfg = TrainConfig(model="mlp_1x64", epochs=2, verbose=0, precision="bf16")
    r = run(cfg, DATA, tmp_path / "bf16", data=data)
    assert r["status"] == "finished" and r["config"]["train"]["precision"] == "bf16"
    assert np.isfinite(r["final"]["train_loss"])
    # the same directory with float32 is a different run: refused without --overwrite
    with pytest.raises(ValueError, match="precision 'bf16' -> 'float32'"):
        run(dataclasses.replace(cfg, precision="float32"), DATA, tmp_path / "bf16", data=data)
    # and the global dtype policy is restored after the run
    assert keras.config.dtype_policy().name == "float32"


def test_suite_precision_changes_every_point_and_its_key():
    pts = grids.figure1_points("cpu", None, models=("mlp_1x512",), parts="bc")
    bf = suite.with_precision(pts, "bf16")
    assert [p.train.precision for p in bf] == ["bf16"] * len(pts)
    assert [p.tag for p in bf] == [p.tag for p in pts]
    assert all(suite.config_key(a) != suite.config_key(b) for a, b in zip(pts, bf))
    # float32 is the default: the keys of existing runs do not move
    same = suite.with_precision(pts, "float32")
    assert [suite.config_key(p) for p in same] == [suite.config_key(p) for p in pts]
