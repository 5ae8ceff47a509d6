"""Training loop: one run of the randomization test, resumable, in one directory.

    from rethinkgen_tf.data import DataConfig
    from rethinkgen_tf.train import TrainConfig, run
    result = run(TrainConfig(model="mlp_1x512"), DataConfig(corrupt=0.5), "runs/x")

`run` is the only entry point: it trains with `keras.Model.fit` (SGD, momentum
0.9, learning rate x `lr_decay` per epoch), re-evaluates the whole training set
and the test set after every epoch, and writes the run directory described in
`rethinkgen_tf.results`.  A finished run (result.json present) is returned
without training unless `overwrite=True`; an unfinished one resumes from its
last epoch checkpoint with the same data order, so a run killed at any point
finishes with the same result as an uninterrupted one.
"""

import dataclasses
import json
import math
import numbers
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Optional

import keras
import tensorflow as tf
from absl import logging
from tensorflow.core.framework import summary_pb2

from rethinkgen_tf import dynamics, evaluate, models, recipes, results, user_model
from rethinkgen_tf.evaluate import GROUP_COLUMNS, first_examples, group_columns, make_evaluate  # noqa: F401

# The per-family defaults (learning rate, decay, epochs, batch norm decay) are in
# rethinkgen_tf/recipes.py; TrainConfig.resolved() reads them.
MAX_SEED = 2**32 - 1  # TrainConfig.seed seeds NumPy's global generator (32 bits)
MAX_EPOCHS = 2**32   # data.pipeline.MAX_EPOCHS: an epoch's index is one word of its seed
STRATEGIES = ("default", "one_device", "mirrored", "multi_worker", "tpu")
# TrainConfig.precision: float32, or bf16 = Keras' mixed_bfloat16 policy (bfloat16
# compute, float32 weights and logits) on any device; on CPUs with AVX-512 BF16 or
# AMX oneDNN runs it natively (benchmarks/train.py --precision; docs/training.md).
PRECISIONS = ("float32", "bf16")
# TrainConfig fields that do not change the trained model: a run directory holding
# another value of these resumes, and a suite's run key ignores them.
RESULT_NEUTRAL = ("overwrite", "verbose", "test_every", "record_examples",
                  "steps_per_execution")
# benchmarks/train.py on a 2-core CPU: XLA is within noise for the MLPs and 2x
# slower for AlexNet and Inception (docs/training.md), so off on CPU.
JIT_DEFAULT_CPU = False


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    model: str = "inception"
    # None (these three): the model family's recipes.Recipe, filled in by resolved()
    epochs: Optional[int] = None
    learning_rate: Optional[float] = None
    lr_decay: Optional[float] = None       # per lr_decay_epochs (staircase)
    lr_decay_epochs: float = 1.0           # epochs between decays (ImageNet: 2)
    optimizer: str = "sgd"                 # sgd (CIFAR-10) | rmsprop (ImageNet)
    momentum: float = 0.9                  # SGD or RMSProp momentum
    rmsprop_decay: float = 0.9             # RMSProp rho
    rmsprop_epsilon: float = 1.0           # RMSProp epsilon (the Inception package's 1.0)
    weight_decay: float = 0.0              # L2: weight_decay / 2 * sum(kernel**2)
    dropout: float = 0.0                   # before the classifier
    batchnorm: Optional[bool] = None       # None: model default
    bn_momentum: Optional[float] = None    # BN moving-average decay; None: recipes.BN_MOMENTUM
    seed: int = 0                          # weight init, dropout
    strategy: str = "default"              # default | one_device | mirrored | multi_worker | tpu
    jit_compile: Optional[bool] = None     # XLA; None: on for GPU/TPU, JIT_DEFAULT_CPU on CPU
    mixed_precision: bool = False          # mixed_float16 (GPU) / mixed_bfloat16 (TPU)
    precision: str = "float32"             # float32 | bf16 (mixed_bfloat16 on any device)
    steps_per_execution: int = 16          # steps per tf.function call (keras_steps_per_execution)
    overfit_threshold: float = 1.0         # "time to overfit": train_eval_acc >= this
    stop_on_overfit: bool = False          # stop once overfit (Figure 1b needs only the time)
    verbose: Optional[int] = None          # Keras progress bar; None: on if stdout is a tty
    overwrite: bool = False                # redo a finished run
    max_steps: Optional[int] = None        # stop after this many steps (within an epoch)
    train_eval_size: Optional[int] = None  # re-evaluate only the first n training examples
    test_every: int = 1                    # test set every n epochs, and always at the end
    record_examples: str = "default"       # examples.npz: default | full (+ p_label) | none
    # A model given by reference (module:function, rethinkgen_tf.user_model): the built-in
    # family whose recipe it borrows (None: the settings above must be given), and the hash
    # of its architecture (user_model.architecture; set by user_model.identified, and by run).
    # Both stay None for the built-in models, so their run keys are unchanged.
    recipe: Optional[str] = None
    model_arch: Optional[str] = None

    def __post_init__(self):
        if self.recipe is not None and not user_model.is_reference(self.model) \
                and self.recipe == models.family(self.model):
            object.__setattr__(self, "recipe", None)  # a built-in model's own recipe: the default
        self.validate()

    def resolved(self):
        """A copy with the model family's recipe (recipes.recipe) in the settings left at
        None: learning rate, decay, epochs (as written to config.json; bn_momentum stays
        None, which models.build reads as recipes.BN_MOMENTUM)."""
        family = self.recipe or models.family(self.model)
        if family == user_model.FAMILY:  # your model, no recipe: every setting must be given
            missing = [k for k in ("learning_rate", "lr_decay", "epochs") if getattr(self, k) is None]
            if missing:
                raise ValueError(user_model.no_recipe_line(self.model, missing))
        r = recipes.recipe(family)
        return dataclasses.replace(
            self,
            learning_rate=r.learning_rate if self.learning_rate is None else self.learning_rate,
            epochs=r.epochs if self.epochs is None else self.epochs,
            lr_decay=r.lr_decay if self.lr_decay is None else self.lr_decay)

    def validate(self):
        """ValueError if a setting is invalid.  Construction calls it (every TrainConfig
        is valid), so calling it again is a no-op kept for older callers."""
        if self.epochs is not None and not 1 <= self.epochs <= MAX_EPOCHS:
            raise ValueError(f"epochs must be in [1, {MAX_EPOCHS}], got {self.epochs}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, numbers.Integral) \
                or not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f"seed must be an integer in [0, {MAX_SEED}], got {self.seed!r}")
        if self.learning_rate is not None and self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.lr_decay is not None and not 0 < self.lr_decay <= 1:
            raise ValueError(f"lr_decay must be in (0, 1], got {self.lr_decay}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.bn_momentum is not None and not 0 <= self.bn_momentum < 1:
            raise ValueError(f"bn_momentum must be in [0, 1), got {self.bn_momentum}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {self.strategy!r}; choose from {STRATEGIES}")
        if self.optimizer not in ("sgd", "rmsprop"):
            raise ValueError(f"optimizer must be sgd or rmsprop, got {self.optimizer!r}")
        if self.lr_decay_epochs <= 0:
            raise ValueError(f"lr_decay_epochs must be > 0, got {self.lr_decay_epochs}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {self.max_steps}")
        if self.test_every < 1:
            raise ValueError(f"test_every must be >= 1, got {self.test_every}")
        if self.steps_per_execution < 1:
            raise ValueError("steps_per_execution must be >= 1")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.precision != "float32" and self.mixed_precision:
            raise ValueError("--precision=bf16 and --mixed_precision choose the same thing "
                             "twice; pass one of them")
        if self.train_eval_size is not None and self.train_eval_size < 1:
            raise ValueError(f"train_eval_size must be >= 1, got {self.train_eval_size}")
        evaluate.check_mode(self.record_examples)
        if self.recipe is not None and self.recipe not in recipes.RECIPES:
            raise ValueError(f"recipe must be one of {', '.join(recipes.RECIPES)}, got "
                             f"{self.recipe!r}")
        if user_model.is_reference(self.model):
            user_model.resolve(self.model)  # ValueError, one line: no such module or function
            missing = [k for k in ("learning_rate", "lr_decay", "epochs") if getattr(self, k) is None]
            if self.recipe is None and missing:  # never a silent learning rate
                raise ValueError(user_model.no_recipe_line(self.model, missing))
        elif self.recipe is not None:
            raise ValueError(f"--recipe={self.recipe} is for models given by reference "
                             f"(module:function); {self.model} trains with its own family's recipe")
        if not models.known(self.model):
            raise ValueError(f"unknown model {self.model!r}; known: {models.NAMES}")


# ---------------------------------------------------------------- strategies

_STRATEGY_CACHE = {}  # a process can create some strategies only once


def make_strategy(name):
    if name not in _STRATEGY_CACHE:
        gpus = tf.config.list_physical_devices("GPU")  # does not start the runtime
        if name == "default":
            s = tf.distribute.get_strategy()
        elif name == "one_device":
            s = tf.distribute.OneDeviceStrategy("/gpu:0" if gpus else "/cpu:0")
        elif name == "mirrored":  # all GPUs, else all (logical) CPUs
            s = tf.distribute.MirroredStrategy(
                None if gpus else [d.name for d in tf.config.list_logical_devices("CPU")])
        elif name == "multi_worker":  # cluster from TF_CONFIG, else from srun's variables
            s = tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=cluster_resolver())
            _patch_keras_multi_worker()
        elif name == "tpu":
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
            s = tf.distribute.TPUStrategy(resolver)
        else:
            raise ValueError(f"unknown strategy {name!r}")
        _STRATEGY_CACHE[name] = s
    return _STRATEGY_CACHE[name]


SLURM_PORT_BASE = 12000  # the first worker's port: + 50 * (job id mod 1000), + its index on the node


def cluster_resolver():
    """The cluster of a multi_worker run: None (TensorFlow reads TF_CONFIG, or trains as
    one worker) where TF_CONFIG is set or no Slurm job step is running, else the step's
    workers from Slurm's own variables through tf.distribute.cluster_resolver.
    SlurmClusterResolver (SLURM_PROCID, SLURM_STEP_NUM_TASKS, SLURM_STEP_NODELIST,
    SLURM_STEP_TASKS_PER_NODE: `srun` sets them, a batch script alone does not).

    The workers listen on ports from SLURM_PORT_BASE + 50 * (SLURM_JOB_ID mod 1000), one
    per task on a node, so two jobs sharing a node do not collide.  GPUs are left as Slurm
    gives them (--gpus-per-task): the resolver's own assignment needs nvidia-smi and at
    least one GPU per task, which a CPU node lacks."""
    env = os.environ
    if env.get("TF_CONFIG") or not env.get("SLURM_STEP_NUM_TASKS"):
        return None
    from tensorflow.python.distribute.cluster_resolver import slurm_cluster_resolver as slurm
    try:
        counts = slurm.expand_tasks_per_node(env["SLURM_STEP_TASKS_PER_NODE"])
        tasks = dict(zip(slurm.expand_hostlist(env["SLURM_STEP_NODELIST"]), counts))
        port = SLURM_PORT_BASE + 50 * (int(env.get("SLURM_JOB_ID", "0")) % 1000)
        return _SlurmResolver(port_base=port, tasks_per_node=tasks, gpus_per_node=max(counts),
                              gpus_per_task=1, auto_set_gpu=False)
    except (KeyError, ValueError, RuntimeError) as e:
        raise ValueError(f"--strategy=multi_worker: cannot read the cluster from Slurm's "
                         f"variables ({e}); run it under srun, or set TF_CONFIG") from None


class _SlurmResolver(tf.distribute.cluster_resolver.SlurmClusterResolver):
    """SlurmClusterResolver with the worker's own GPUs (those it sees), not the one GPU per
    task that `cluster_resolver` passes it so that it lists every task."""

    def num_accelerators(self, task_type=None, task_id=None, config_proto=None):
        n = len(tf.config.list_physical_devices("GPU"))
        return {"GPU": n} if n else {}


def _patch_keras_multi_worker():
    """Keras 3.15's fit reduces each step's (scalar) logs across workers with
    strategy.reduce("MEAN", v, axis=0), which fails for scalars; reduce them
    with axis=None (the mean over all replicas) instead."""
    from keras.src.backend.tensorflow import trainer as kt

    original = kt.reduce_per_replica
    if getattr(original, "patched", False):
        return

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and kt._collective_all_reduce_multi_worker(strategy):
            return tf.nest.map_structure(lambda v: strategy.reduce("MEAN", v, axis=None), values)
        return original(values, strategy, reduction)

    reduce_per_replica.patched = True
    kt.reduce_per_replica = reduce_per_replica


def _worker(strategy):
    """(is_chief, task_id) for multi-worker strategies, else (True, 0)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True, 0
    task_type, task_id = resolver.task_type, resolver.task_id or 0
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return task_type == "chief" or (not has_chief and task_id == 0), task_id


# ---------------------------------------------------------------- pieces


class Checkpoint(keras.callbacks.Callback):
    """An epoch checkpoint that survives kill -9 at any instant.

    Each epoch's weights (model + optimizer state, incl. the step counter that
    drives the learning-rate schedule) go to a new file, and only then does an
    atomic rewrite of training_metadata.json point to it; so the metadata always
    names a complete checkpoint of the epoch it records.  The checkpoint is kept
    after training: `run` removes it once result.json is written.  skip: a function
    telling whether to leave the epoch just ended unsaved (it diverged: EpochMetrics).
    """

    def __init__(self, backup_dir, skip=None):
        super().__init__()
        self.backup_dir = Path(backup_dir)
        self.skip = skip

    def on_train_begin(self, logs=None):
        self.restore(self.model)

    def on_epoch_end(self, epoch, logs=None):
        if self.skip is not None and self.skip():
            return
        self.backup_dir.mkdir(parents=True, exist_ok=True)
        name = f"epoch{epoch + 1}.weights.h5"
        _save_weights(self.model, self.backup_dir / name)
        results.write_json(self.backup_dir / "training_metadata.json",
                           {"epoch": epoch + 1, "weights": name})
        for f in self.backup_dir.glob("*.weights.h5"):
            if f.name != name:
                f.unlink(missing_ok=True)

    def metadata(self):
        """{"epoch": e, "weights": file} of the latest checkpoint, or None."""
        path = self.backup_dir / "training_metadata.json"
        if not path.exists():
            return None
        meta = results.read_json(path)
        if not isinstance(meta.get("epoch"), int) or not isinstance(meta.get("weights"), str):
            raise results.StateError(f"{path} is damaged (no epoch/weights); rerun with "
                                     "--overwrite to retrain, or delete the run directory")
        return meta

    def restore(self, model):
        """Loads the latest checkpoint into `model` (built, compiled); its epoch or 0."""
        meta = self.metadata()
        if not meta:
            return 0
        path = self.backup_dir / meta["weights"]
        if model.optimizer is not None and not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        try:
            model.load_weights(str(path))
        except Exception as e:  # h5py/Keras errors vary: truncated, missing, foreign
            raise results.StateError(
                f"{path} is damaged or missing ({type(e).__name__}); rerun with --overwrite "
                f"to retrain from scratch, or delete {self.backup_dir} to retrain this run"
            ) from None
        return meta["epoch"]


def make_optimizer(cfg, lr):
    if cfg.optimizer == "rmsprop":
        return keras.optimizers.RMSprop(lr, rho=cfg.rmsprop_decay, momentum=cfg.momentum,
                                        epsilon=cfg.rmsprop_epsilon)
    return keras.optimizers.SGD(lr, momentum=cfg.momentum)


class MaxSteps(keras.callbacks.Callback):
    """Stops training once the optimizer has taken `max_steps` steps."""

    def __init__(self, max_steps):
        super().__init__()
        self.max_steps = max_steps

    def on_train_batch_end(self, batch, logs=None):
        if int(self.model.optimizer.iterations.numpy()) >= self.max_steps:
            self.model.stop_training = True


_SCALAR = summary_pb2.SummaryMetadata(
    plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))


def _log_scalars(writer, row):
    with writer.as_default(step=row["step"]):
        for k, v in row.items():
            if k in GROUP_COLUMNS and v != v:  # no such examples: no point, not NaN
                continue
            if k not in ("epoch", "step"):  # = tf.summary.scalar, minus tensorboard
                tf.summary.write(k, tf.constant(v, tf.float32), metadata=_SCALAR)
    writer.flush()


def tensorboard_writer(run_dir, rows):
    """A summary writer for run_dir/tb holding exactly `rows` (the epochs kept).

    metrics.csv is the record: on a resume, tb/ is rewritten from its rows, so
    epochs logged after the last checkpoint by a killed process are not
    duplicated."""
    tb = Path(run_dir) / "tb"
    shutil.rmtree(tb, ignore_errors=True)
    writer = tf.summary.create_file_writer(str(tb))
    for row in rows:
        _log_scalars(writer, row)
    return writer


class EpochMetrics(keras.callbacks.Callback):
    """After each epoch: evaluate, append a metrics.csv row, rewrite examples.npz (if
    records is a dynamics.Records), TensorBoard, log line.

    An epoch whose training loss (the epoch's mean, so NaN or inf if any batch's was) or
    re-evaluated training loss is not finite diverged: it gets no row, training stops,
    and `diverged` becomes {"epoch", "what", "value"} (otherwise None)."""

    def __init__(self, run_dir, data, evaluate, lr_at, steps, rows, threshold, stop,
                 train_eval_size=None, test_every=1, epochs=None, max_steps=None,
                 records=None):
        super().__init__()
        self.test_every, self.epochs, self.max_steps = test_every, epochs, max_steps
        self.train_eval = data.train_eval if train_eval_size is None else \
            first_examples(data.train_eval, train_eval_size,
                           data.eval_batch_size or data.config.batch_size)
        self.records = records
        self.examples = "none" if records is None else records.mode
        self.run_dir, self.data, self.evaluate = run_dir, data, evaluate
        self.lr_at, self.steps, self.rows = lr_at, steps, rows
        self.threshold, self.stop = threshold, stop
        self.writer = tensorboard_writer(run_dir, rows)
        self.diverged = None

    def on_epoch_begin(self, epoch, logs=None):
        self.t0 = time.perf_counter()

    def _diverge(self, epoch, what, value):
        self.diverged = {"epoch": epoch + 1, "what": what, "value": _nonfinite(value)}
        self.model.stop_training = True
        logging.warning("%s: epoch %d diverged: the %s is %s; stopping", self.run_dir,
                        epoch + 1, what, self.diverged["value"])

    def on_epoch_end(self, epoch, logs=None):
        t1 = time.perf_counter()
        if not math.isfinite(float(logs["loss"])):
            return self._diverge(epoch, "training loss", float(logs["loss"]))
        tr = self.evaluate(self.train_eval, self.examples)
        if not math.isfinite(float(tr["loss"][0])):  # weights gone bad in the last steps
            return self._diverge(epoch, "re-evaluated training loss", float(tr["loss"][0]))
        step = int(self.model.optimizer.iterations.numpy())
        stopping = self.stop and float(tr["acc"][0]) >= self.threshold
        last = (stopping or epoch + 1 == self.epochs
                or (self.max_steps is not None and step >= self.max_steps))
        if last or (epoch + 1) % self.test_every == 0:
            te = self.evaluate(self.data.test)
        else:  # skipped (test_every): NaN in metrics.csv, a gap in plots
            te = {k: [float("nan")] for k in ("loss", "acc", "top5")}
        t2 = time.perf_counter()
        row = dict(
            epoch=epoch + 1, step=step, lr=float(self.lr_at(step - self.steps)),
            train_loss=float(logs["loss"]), train_acc=float(logs["accuracy"]),
            train_eval_loss=float(tr["loss"][0]), train_eval_acc=float(tr["acc"][0]),
            train_eval_acc_orig=float(tr["acc"][1]), **group_columns(tr),
            test_loss=float(te["loss"][0]), test_acc=float(te["acc"][0]),
            train_eval_top5=float(tr["top5"][0]), test_top5=float(te["top5"][0]),
            epoch_time=t1 - self.t0, images_per_sec=self.data.num_train / (t1 - self.t0),
            eval_time=t2 - t1,
            wall_time=(self.rows[-1]["wall_time"] if self.rows else 0.0) + t2 - self.t0)
        self.rows.append(row)
        results.write_metrics(self.run_dir, self.rows)
        if self.records is not None:  # after the metrics row, before the checkpoint
            self.records.add(epoch + 1, tr["pred"].numpy(), tr["labels"].numpy(),
                             tr["p_label"].numpy() if "p_label" in tr else None)
            self.records.save(self.run_dir / results.EXAMPLES_FILE)
        _log_scalars(self.writer, row)
        logging.info(
            "epoch %d step %d lr %.5f | train loss %.4f acc %.4f | train(eval) acc "
            "%.4f orig %.4f | test loss %.4f acc %.4f | %.0f img/s, %.1fs + eval %.1fs",
            row["epoch"], step, row["lr"], row["train_loss"], row["train_acc"],
            row["train_eval_acc"], row["train_eval_acc_orig"], row["test_loss"],
            row["test_acc"], row["images_per_sec"], row["epoch_time"], row["eval_time"])
        if stopping:
            self.model.stop_training = True


def _nonfinite(x):
    return "NaN" if math.isnan(x) else ("inf" if x > 0 else "-inf")


def diverged_line(result, run_dir=None, lr_flag="the learning rate"):
    """The one line that says a run diverged (result["status"] == "diverged") and what to do;
    lr_flag: how the command that prints it sets the learning rate (e.g. its flag)."""
    lr = result.get("config", {}).get("train", {}).get("learning_rate")
    now = f" (now {lr:g})" if isinstance(lr, (int, float)) else ""
    where = f"{run_dir}: " if run_dir is not None else ""
    return (f"{where}the run diverged: the {result.get('diverged_what', 'training loss')} became "
            f"{result.get('diverged_value', 'NaN')} in epoch {result['diverged_epoch']}; rerun with "
            f"a smaller {lr_flag}{now} and --overwrite")


def _patch_symbolic_build(model, strategy):
    """Keras 3.15's fit builds its metrics from the first batch averaged over all
    replicas with strategy.reduce, which MultiWorkerMirroredStrategy rejects
    for input batches; one local replica's batch has the same structure."""

    def build(iterator=None, data_batch=None):
        if iterator is not None:
            for _, _, it in iterator:
                data_batch = tf.nest.map_structure(
                    lambda v: strategy.experimental_local_results(v)[0], next(it))
                break
        with strategy.scope():
            model._symbolic_build(data_batch=data_batch)

    model._maybe_symbolic_build = build


def keras_steps_per_execution(requested, steps, max_steps=None):
    """The steps per tf.function call given to Keras for `requested` (TrainConfig.
    steps_per_execution) and an epoch of `steps` steps: the smallest divisor of `steps` that is
    at least min(requested, steps), so that no call runs past the end of an epoch (Keras would
    take the next epoch's first batches into it, and evaluate the epoch after the wrong step).
    Where that divisor exceeds 4 x requested (a prime number of steps, say), the largest
    divisor up to `requested`, so that a stop (Ctrl-C, SIGTERM) still waits for few steps; and
    1 with max_steps, which stops at a step.  (train.run also takes 1 for a caller's per-step
    callback, and for the mirrored, multi-worker and TPU strategies, where Keras 3.15 cannot
    run several steps per call on a distributed iterator.)  Every choice trains the same model: the setting
    only groups steps into calls (it is in RESULT_NEUTRAL)."""
    if max_steps is not None or requested <= 1 or steps <= 1:
        return 1
    want = min(requested, steps)
    above = next(d for d in range(want, steps + 1) if steps % d == 0)
    if above <= 4 * requested:
        return above
    return next(d for d in range(want, 0, -1) if steps % d == 0)


def _per_step(callbacks):
    """Whether a caller's callback acts after single steps (on_train_batch_begin/_end): it
    gets them, one step per tf.function call, rather than groups of steps."""
    base = keras.callbacks.Callback
    return any(type(c).on_train_batch_end is not base.on_train_batch_end
               or type(c).on_train_batch_begin is not base.on_train_batch_begin
               for c in callbacks)


def _train_stream(data, start, epochs):
    """Epochs start..epochs-1 of training batches, each epoch's order a function
    of (shuffle_seed, epoch) only, so a resumed run sees the same batches."""
    if data.train_epochs is None:  # streamed data: replay the reshuffles
        steps = int(data.train.cardinality())
        return data.train.repeat().skip(start * steps).take((epochs - start) * steps)
    return data.train_epochs(start, epochs)


def _changes(old, new):
    """The settings in which a run directory's config.json (`old`) and a new
    config differ, as ["epochs 3 -> 5", ...]; empty for the same run.

    Settings that do not change the model (RESULT_NEUTRAL) are ignored, and
    settings a newer version added (absent from the old file) count as equal
    when they hold their defaults, so upgrading does not orphan a run."""
    from rethinkgen_tf.data import DataConfig
    missing = object()
    out = []
    for part, cls in (("train", TrainConfig), ("data", DataConfig)):
        defaults = {f.name: f.default for f in dataclasses.fields(cls)}
        o, n = old.get(part, {}), new.get(part, {})
        for k in sorted(set(o) | set(n)):
            if part == "train" and k in RESULT_NEUTRAL:
                continue
            before = o.get(k, defaults.get(k, missing))
            after = n.get(k, missing)
            if k == "model_arch" and before != after:  # user_model.architecture
                out.append(f"the architecture of model {n.get('model')} (its builder changed: "
                           f"model_arch {o.get(k)!r} -> {n.get(k)!r})")
            elif before is missing or after is missing or before != after:
                out.append(f"{k} {o.get(k)!r} -> {n.get(k)!r}")
    return out


def _differs(old, new):
    """Whether a run directory's config.json describes a different run."""
    return bool(_changes(old, new))


def _summary(changes):
    return ", ".join(changes[:4]) + (", ..." if len(changes) > 4 else "")


def _clear(run_dir):
    """Empties a run directory for a new run, except result.json, which becomes
    result.old.json until the new result is written."""
    if (run_dir / "result.json").exists():
        os.replace(run_dir / "result.json", run_dir / "result.old.json")
    for name in ("metrics.csv", results.EXAMPLES_FILE, "config.json", "model.weights.h5"):
        (run_dir / name).unlink(missing_ok=True)
    for name in ("backup", "tb"):
        shutil.rmtree(run_dir / name, ignore_errors=True)


def _tidy(run_dir):
    """What a finished run no longer needs: the checkpoint and the old result."""
    (run_dir / "result.old.json").unlink(missing_ok=True)
    shutil.rmtree(run_dir / "backup", ignore_errors=True)


# ---------------------------------------------------------------- run


def run(train_config: TrainConfig, data_config, run_dir, data=None, callbacks=()):
    """Trains (or resumes, or skips) one run; returns the result dict.

    data: an already loaded `rethinkgen_tf.data.Data` for `data_config`, or a
    function returning one (called only if the run needs training); loaded
    from data_config otherwise.  callbacks: extra Keras callbacks for `fit`.

    The run directory has one writer: `results.RunLocked` if another process
    holds it.  A directory holding another configuration (finished or not)
    raises ValueError unless overwrite=True; damaged files raise
    `results.StateError`.  Every file is replaced atomically, in an order
    that lets a run killed at any instant resume without retraining an epoch
    it had finished.
    """
    train_config.validate()
    cfg = train_config.resolved()
    # a model given by reference: its architecture is part of the run's identity (config.json)
    cfg = user_model.identified(cfg, data_config, data)
    run_dir = Path(run_dir)
    strategy = make_strategy(cfg.strategy)
    is_chief, task_id = _worker(strategy)
    if not is_chief:  # every worker computes everything; only the chief's files count
        run_dir = run_dir / f"worker{task_id}"
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OSError(e.errno, f"cannot create the run directory {run_dir}: "
                      f"{e.strerror}; choose another --output_dir") from None
    with results.RunLock(run_dir):
        return _run_locked(cfg, data_config, run_dir, data, callbacks, strategy)


def _run_locked(cfg, data_config, run_dir, data, callbacks, strategy):
    results.remove_strays(run_dir)
    results.remove_strays(run_dir / "backup")
    config = json.loads(json.dumps(
        {"train": dataclasses.asdict(cfg), "data": dataclasses.asdict(data_config)}))
    old = results.read_json(run_dir / "config.json") if (run_dir / "config.json").exists() \
        else None
    progress = any((run_dir / n).exists() for n in ("result.json", "metrics.csv", "backup"))
    if old is not None and _differs(old, config):
        if not cfg.overwrite and progress:
            done = results.load_result(run_dir)  # StateError if damaged
            state = f"a {done['status']}" if done else "an unfinished"
            raise ValueError(f"{run_dir} holds {state} run with a different config "
                             f"({_summary(_changes(old, config))}); pass --overwrite to replace it, "
                             "or choose another --output_dir or --run_name")
        _clear(run_dir)
    elif cfg.overwrite and (run_dir / "result.json").exists():
        _clear(run_dir)
    done = results.load_result(run_dir)
    if done is not None:
        _tidy(run_dir)
        logging.info("%s: %s already (overwrite=True to redo)", run_dir, done["status"])
        return done
    if (run_dir / "result.old.json").exists():
        logging.info("%s: result.old.json is the previous result, kept until this run's "
                     "is written", run_dir)
    checkpoint = Checkpoint(run_dir / "backup", skip=lambda: metrics.diverged is not None)
    meta = checkpoint.metadata()
    start = meta["epoch"] if meta else 0
    rows = results.read_metrics(run_dir)
    if len(rows) < start:
        raise results.StateError(
            f"{run_dir / 'metrics.csv'} has {len(rows)} rows but the checkpoint is at epoch "
            f"{start}; rerun with --overwrite to retrain, or delete the run directory")
    rows = rows[:start]
    # examples.npz, like metrics.csv: the rows past the checkpoint are dropped
    examples = run_dir / results.EXAMPLES_FILE
    previous = results.read_examples(examples) \
        if cfg.record_examples != "none" and examples.exists() else None

    if data is None:
        from rethinkgen_tf.data import load
        data = load(data_config)
    elif callable(data):
        data = data()
    fingerprint = getattr(data, "fingerprint", None)
    if fingerprint is not None:
        config["data_fingerprint"] = dict(fingerprint)
    if start and _data_changed(old, fingerprint, data_config, run_dir, cfg.overwrite):
        _clear(run_dir)  # --overwrite: start again on the new data
        start, rows, previous = 0, [], None
    results.write_json(run_dir / "config.json", config)  # once the data has loaded
    steps = -(-data.num_train // data_config.batch_size)
    on_accel = bool(tf.config.list_logical_devices("GPU") or cfg.strategy == "tpu")
    jit = cfg.jit_compile if cfg.jit_compile is not None else (on_accel or JIT_DEFAULT_CPU)

    policy = keras.config.dtype_policy()
    if cfg.precision == "bf16":
        keras.config.set_dtype_policy("mixed_bfloat16")
    elif cfg.mixed_precision:
        keras.config.set_dtype_policy("mixed_bfloat16" if cfg.strategy == "tpu"
                                      else "mixed_float16")
    try:
        keras.utils.set_random_seed(cfg.seed)
        with strategy.scope():
            model = models.build(cfg.model, data.input_shape, data.num_classes,
                                 batchnorm=cfg.batchnorm, dropout=cfg.dropout,
                                 weight_decay=cfg.weight_decay,
                                 **({} if cfg.bn_momentum is None
                                    else {"bn_momentum": cfg.bn_momentum}))
            lr_at = keras.optimizers.schedules.ExponentialDecay(
                cfg.learning_rate, max(1, round(steps * cfg.lr_decay_epochs)), cfg.lr_decay,
                staircase=True)
            model.compile(
                optimizer=make_optimizer(cfg, lr_at),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=["accuracy"], jit_compile=jit,
                steps_per_execution=1 if _per_step(callbacks) or cfg.strategy not in (
                    "default", "one_device") else keras_steps_per_execution(
                    cfg.steps_per_execution, steps, cfg.max_steps))
    finally:
        keras.config.set_dtype_policy(policy)
    if cfg.model_arch is not None and user_model.architecture(model) != cfg.model_arch:
        raise ValueError(f"model {cfg.model}: the builder made another architecture "
                         f"({user_model.architecture(model)}) than the run's "
                         f"({cfg.model_arch}); a builder must build the same model every time")

    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        _patch_symbolic_build(model, strategy)
    if start:
        logging.info("%s: resuming after epoch %d", run_dir, start)
    verbose = cfg.verbose if cfg.verbose is not None else int(sys.stdout.isatty())
    t0 = time.time()
    metrics = None
    if start < cfg.epochs and not (cfg.stop_on_overfit and rows and
                                   rows[-1]["train_eval_acc"] >= cfg.overfit_threshold):
        records = None
        if cfg.record_examples != "none":
            n = data.num_train if cfg.train_eval_size is None \
                else min(cfg.train_eval_size, data.num_train)
            index = range(n) if data.train_indices is None else data.train_indices[:n]
            records = dynamics.Records(cfg.record_examples, index, previous,
                                       examples).truncate(start)
        metrics = EpochMetrics(run_dir, data, make_evaluate(model, jit), lr_at, steps,
                               rows, cfg.overfit_threshold, cfg.stop_on_overfit,
                               cfg.train_eval_size, cfg.test_every, cfg.epochs, cfg.max_steps,
                               records)
        if cfg.max_steps:
            callbacks = (*callbacks, MaxSteps(cfg.max_steps))
        model.fit(_train_stream(data, start, cfg.epochs), epochs=cfg.epochs,
                  initial_epoch=start, steps_per_epoch=steps, verbose=verbose, shuffle=False,
                  callbacks=[metrics, checkpoint, *callbacks])  # restores in on_train_begin
    else:  # trained, but killed before result.json
        checkpoint.restore(model)
    diverged = metrics.diverged if metrics is not None else None
    if diverged is None:  # a diverged run's weights are not finite: no final weights
        _save_weights(model, run_dir / "model.weights.h5")

    epoch, step = results.time_to_overfit(rows, cfg.overfit_threshold)
    tested = results.tested(rows)
    best = max(tested, key=lambda r: r["test_acc"]) if tested else None
    result = {
        "status": "finished" if diverged is None else "diverged",
        **({} if diverged is None else {
            "diverged_epoch": diverged["epoch"], "diverged_what": diverged["what"],
            "diverged_value": diverged["value"]}),
        "model": cfg.model, "dataset": data_config.dataset,
        "randomize": data_config.randomize, "corrupt": data_config.label_prob,
        "seed": cfg.seed, "data_seed": data_config.seed,
        "epochs": len(rows), "steps": rows[-1]["step"] if rows else 0,
        "final": rows[-1] if rows else None,
        "overfit_epoch": epoch, "overfit_step": step,
        "best_test_acc": best["test_acc"] if best else None,
        "best_test_epoch": best["epoch"] if best else None,
        "params": models.paper_param_count(model),
        "num_train": data.num_train, "num_test": data.num_test,
        "strategy": cfg.strategy, "num_replicas": strategy.num_replicas_in_sync,
        "jit_compile": jit, "devices": [d.name for d in tf.config.list_logical_devices()],
        "wall_time": rows[-1]["wall_time"] if rows else 0.0,
        "session_time": time.time() - t0,
        "versions": results.versions(), "op": results.op_build(),
        "config": config,
    }
    results.write_json(run_dir / "result.json", result)
    _tidy(run_dir)
    return result


def _data_changed(old, fingerprint, data_config, run_dir, overwrite):
    """Whether the data differs from the fingerprint in the run directory's config.json
    (`old`), for a resume: ValueError (one line) if so, unless overwrite (then True).  A
    config.json without a fingerprint (written before they existed) is taken as the same."""
    before = (old or {}).get("data_fingerprint")
    if not isinstance(before, dict) or fingerprint is None:
        return False
    changed = [k for k in ("train", "test") if k in before and k in fingerprint
               and before[k] != fingerprint[k]]
    if not changed or overwrite:
        return bool(changed)
    which = {"train": "training set", "test": "test set"}
    what = ", ".join(f"{which[k]} fingerprint {before[k]!s:.12} != {fingerprint[k]!s:.12}"
                     for k in changed)
    under = f" under --data_dir={data_config.data_dir}" if data_config.data_dir else ""
    raise ValueError(f"the data{under} has changed since the run in {run_dir} started ({what}); "
                     "rerun with --overwrite to start again on the new data, or restore the "
                     "old data")


def _save_weights(model, path):
    """model.save_weights, atomically (Keras wants the .weights.h5 suffix)."""
    tmp = path.with_name(f".{path.name}{results.TMP_TAG}{os.getpid()}.weights.h5")
    try:
        model.save_weights(str(tmp))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
