"""Whole-dataset evaluation in inference mode, for the training loop and the recorders.

    evaluate = make_evaluate(model, jit_compile=False)
    r = evaluate(ds)                        # {"loss": [...], "acc": [...], "top5": [...]}
    group_columns(r)                        # train_eval_acc_clean / _noisy / _noisy_orig

`train` re-evaluates the training and test sets with it after every epoch, and
`dynamics.ExampleRecorder` records per-example outcomes with it.  The per-example
modes (`MODES`, `TrainConfig.record_examples`) are checked here, where they are
carried out.  This module imports TensorFlow and nothing of the package.
"""
import functools

import tensorflow as tf

MODES = ("none", "default", "full")  # per-example outputs: none, "pred" and "labels", also "p_label"


def check_mode(mode):
    if mode not in MODES:
        raise ValueError(f"record_examples must be one of {MODES}, got {mode!r}")
    return mode


def make_evaluate(model, jit_compile, from_logits=True):
    """Compiled whole-dataset evaluation in inference mode.

    evaluate(ds, examples="none") -> {"loss": [...], "acc": [...], "top5": [...]} with
    one entry per label column of ds's elements (images, labels_1, labels_2, ...).  With
    two or more label columns (training, original labels) also "groups": the correct
    counts that train_eval_acc_clean/noisy/noisy_orig are made of (`group_columns`).
    examples="default" adds the per-example "pred" ([n] int32, the predicted class) and
    "labels" ([n, columns] int32); "full" also "p_label" ([n] float32, the softmax
    probability of the first label column, exp(-cross-entropy)).  The batch loop runs
    inside one tf.function (the per-example outputs accumulate in TensorArrays in the
    loop's state), so there is no Python per batch.  from_logits=False: the model
    outputs probabilities (their log is used as logits).
    """
    def logits_of(x):
        out = tf.cast(model(x, training=False), tf.float32)
        return out if from_logits else tf.math.log(tf.maximum(out, 1e-30))

    # autograph=False and Dataset.reduce instead of a Python for loop: autograph
    # rereads the source file to convert a loop, and if the file was edited
    # after the run started it falls back to plain Python, which unrolls the
    # loop over the dataset forever.
    predict = tf.function(logits_of, jit_compile=jit_compile, autograph=False)

    def add_batch(examples, state, batch):
        (loss, correct, top5, count), groups, per_example = state
        logits = predict(batch[0])
        pred = tf.argmax(logits, -1, output_type=tf.int32)
        ys = [tf.cast(y, tf.int32) for y in batch[1:]]
        k5 = tf.minimum(5, tf.shape(logits)[-1])
        ces = [tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits) for y in ys]
        loss += tf.stack([tf.reduce_sum(tf.cast(ce, tf.float64)) for ce in ces])
        correct += tf.stack([tf.reduce_sum(tf.cast(pred == y, tf.float64)) for y in ys])
        top5 += tf.stack([tf.reduce_sum(tf.cast(tf.math.in_top_k(y, logits, k5), tf.float64))
                          for y in ys])
        if len(ys) > 1:  # [clean, clean correct, noisy correct, noisy correct on original]
            noisy = ys[0] != ys[1]
            count_of = lambda m: tf.reduce_sum(tf.cast(m, tf.float64))
            groups += tf.stack([count_of(~noisy), count_of(~noisy & (pred == ys[0])),
                                count_of(noisy & (pred == ys[0])),
                                count_of(noisy & (pred == ys[1]))])
        if examples != "none":
            i = per_example[0].size()
            per_example = (per_example[0].write(i, pred),
                           per_example[1].write(i, tf.stack(ys, axis=1)),
                           *([per_example[2].write(i, tf.exp(-ces[0]))]
                             if examples == "full" else []))
        return ((loss, correct, top5, count + tf.cast(tf.shape(pred)[0], tf.float64)),
                groups, per_example)

    @functools.partial(tf.function, autograph=False)
    def evaluate(ds, examples="none"):
        check_mode(examples)
        columns = len(ds.element_spec) - 1
        zeros = tf.zeros([columns], tf.float64)
        groups = tf.zeros([4 if columns > 1 else 0], tf.float64)
        arrays = lambda dtype, shape: tf.TensorArray(dtype, size=0, dynamic_size=True,
                                                     infer_shape=False, element_shape=shape)
        per_example = () if examples == "none" else (
            arrays(tf.int32, [None]), arrays(tf.int32, [None, columns]),
            *([arrays(tf.float32, [None])] if examples == "full" else []))
        (loss, correct, top5, count), groups, per_example = ds.reduce(
            ((zeros, zeros, zeros, tf.constant(0.0, tf.float64)), groups, per_example),
            functools.partial(add_batch, examples))
        out = {"loss": loss / count, "acc": correct / count, "top5": top5 / count}
        if columns > 1:
            out["groups"] = tf.concat([groups, [count]], 0)
        if examples != "none":
            out["pred"], out["labels"] = per_example[0].concat(), per_example[1].concat()
            if examples == "full":
                out["p_label"] = per_example[2].concat()
        return out

    return evaluate


GROUP_COLUMNS = ("train_eval_acc_clean", "train_eval_acc_noisy", "train_eval_acc_noisy_orig")


def group_columns(evaluated):
    """{train_eval_acc_clean, _noisy, _noisy_orig} from an evaluation with two label
    columns: accuracy on the training labels of the examples whose training label is
    (not) corrupted, and of the corrupted ones on their original labels; NaN for an empty
    group (e.g. every column but clean in a run without corruption)."""
    if "groups" not in evaluated:
        return dict.fromkeys(GROUP_COLUMNS, float("nan"))
    clean, clean_ok, noisy_ok, noisy_orig_ok, count = (float(v) for v in evaluated["groups"])
    noisy = count - clean
    ratio = lambda a, b: a / b if b else float("nan")
    return dict(zip(GROUP_COLUMNS, (ratio(clean_ok, clean), ratio(noisy_ok, noisy),
                                    ratio(noisy_orig_ok, noisy))))


def first_examples(ds, n, batch_size):
    """The first n examples of a batched dataset (the last batch cut to size)."""
    ds = ds.take(-(-n // batch_size))
    if n % batch_size:
        ds = ds.enumerate().map(lambda j, b: tuple(t[:n - j * batch_size] for t in b))
    return ds
