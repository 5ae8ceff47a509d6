"""The Keras internals train.py patches for MultiWorkerMirroredStrategy are still
where and what the patches expect.  requirements.txt pins Keras to the minor
version they were written against; this test fails loudly when a Keras upgrade
moves them (update train._patch_keras_multi_worker / _patch_symbolic_build
and the pin together)."""
import inspect

import keras

from rethinkgen_tf import models


def test_keras_version_is_the_pinned_one():
    major, minor = (int(x) for x in keras.__version__.split(".")[:2])
    assert (major, minor) == (3, 15), (
        f"Keras {keras.__version__}: the multi-worker patches in train.py were written for 3.15")


def test_reduce_per_replica_patch_target():
    from keras.src.backend.tensorflow import trainer as kt
    assert callable(kt.reduce_per_replica) and callable(kt._collective_all_reduce_multi_worker)
    params = list(inspect.signature(kt.reduce_per_replica).parameters)
    assert params[:3] == ["values", "strategy", "reduction"], params


def test_symbolic_build_patch_target():
    from keras.src.backend.tensorflow.trainer import TensorFlowTrainer
    assert "data_batch" in inspect.signature(TensorFlowTrainer._symbolic_build).parameters
    build = inspect.signature(TensorFlowTrainer._maybe_symbolic_build).parameters
    assert {"iterator", "data_batch"} <= set(build), build


def test_weight_decay_reaches_every_kernel_through_public_layers():
    model = models.build("inception", weight_decay=5e-4)
    kernels = [l for l in models.all_layers(model) if getattr(l, "kernel", None) is not None]
    assert len(kernels) == 20
    assert all(l.kernel.regularizer is not None for l in kernels)
    assert len(model.losses) == 20
