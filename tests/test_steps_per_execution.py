"""TrainConfig.steps_per_execution groups training steps into tf.function calls and never
changes the model: every epoch's metrics row and the final weights are those of one step per
call, for any value, and no call runs past the end of an epoch."""
import dataclasses

import numpy as np
import pytest
from tiny import ARRAYS, DATA, strip

from rethinkgen_tf import results, suite
from rethinkgen_tf.data import load
from rethinkgen_tf.train import RESULT_NEUTRAL, TrainConfig, keras_steps_per_execution, run


@pytest.mark.parametrize("requested, steps, max_steps, want", [
    (16, 391, None, 17),   # the smallest divisor of 391 = 17 x 23 from 16 up
    (16, 390, None, 26),   # 390 = 2 x 3 x 5 x 13: 26
    (16, 384, None, 16),
    (16, 8, None, 8),      # a whole epoch per call
    (16, 79, None, 1),     # prime: 79 steps a call would delay a stop, so 1
    (3, 10, None, 5),
    (16, 391, 1000, 1),    # max_steps stops at a step
    (1, 391, None, 1),
])
def test_keras_steps_per_execution_divides_the_epoch(requested, steps, max_steps, want):
    got = keras_steps_per_execution(requested, steps, max_steps)
    assert got == want
    assert steps % got == 0


def test_steps_per_execution_trains_the_same_model(tmp_path):
    data = load(DATA, ARRAYS)  # 256 examples, batch 32: 8 steps an epoch
    out = {}
    for spe in (1, 3, 16):  # 3 -> 4 steps a call, 16 -> the whole epoch
        d = tmp_path / f"spe{spe}"
        r = run(TrainConfig(model="mlp_1x64", epochs=3, steps_per_execution=spe, verbose=0),
                DATA, d, data=data)
        out[spe] = (strip(results.read_metrics(d)), r)
    rows1 = out[1][0]
    assert len(rows1) == 3 and all(r["train_loss"] > 0 for r in rows1)
    w1 = _weights(tmp_path / "spe1" / "model.weights.h5")
    assert w1
    for spe in (3, 16):
        assert out[spe][0] == rows1, spe
        w = _weights(tmp_path / f"spe{spe}" / "model.weights.h5")
        assert w.keys() == w1.keys() and all(np.array_equal(w[k], w1[k]) for k in w1), spe


def _weights(path):
    import h5py
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()])
                     if isinstance(obj, h5py.Dataset) else None)
    return out


def test_a_per_step_callback_sees_every_step(tmp_path):
    import keras
    seen = []

    class Steps(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append(int(self.model.optimizer.iterations.numpy()))

    run(TrainConfig(model="mlp_1x64", epochs=2, verbose=0), DATA, tmp_path,
        data=load(DATA, ARRAYS), callbacks=[Steps()])
    assert seen == list(range(1, 17))


def test_steps_per_execution_is_not_part_of_the_run_identity():
    assert "steps_per_execution" in RESULT_NEUTRAL
    p = suite.Point((), TrainConfig(model="mlp_1x64"), DATA)
    q = dataclasses.replace(p, train=TrainConfig(model="mlp_1x64", steps_per_execution=1))
    assert suite.config_key(p) == suite.config_key(q)
