"""The randomization test from Python (a notebook): your model, your data, a few lines.

    import rethinkgen_tf as rg
    res = rg.randomization_test(build, "mydata", randomizations=["none", "labels"],
                                corruptions=[0.5], epochs=20, recipe="mlp")
    res                     # one row per run: randomization, p, seed, epochs to fit, accuracies
    res.to_csv("runs/api/results.csv")
    res.plot()              # Figure 1 as the suites draw it (rethinkgen_tf.plots.figure1)

`model` is a built-in name ("mlp_1x512"), a reference "module:function", or a function
object (a builder ``(input_shape, num_classes, **options)``, or a factory taking no
arguments; rethinkgen_tf.user_model has the contract).  `data` is a class-folder
directory (<dir>/{train,test}/<class>/<image>), a .npz file (x_train, y_train, x_test,
y_test), a CIFAR-10 directory (dataset="cifar10"), or the four arrays themselves.

Every run is an ordinary run directory under `output_dir`, named as the suites name
theirs (grids.Source, suite.run_dir): calling again returns the finished runs without
training them, and resumes an interrupted one.
"""
import csv
import dataclasses
import io
import os
from pathlib import Path

from rethinkgen_tf import grids, plots, scales, suite, train, user_model
from rethinkgen_tf.data import RANDOMIZATIONS

COLUMNS = ("model", "randomization", "p", "seed", "epochs_to_fit", "epochs", "train_acc",
           "test_acc", "status", "run_dir")


class Results(list):
    """One dict per run (COLUMNS), plus what made them: `pairs` [(grids Point, result)] and
    `output_dir`."""

    def __init__(self, rows, pairs, output_dir):
        super().__init__(rows)
        self.pairs, self.output_dir = pairs, Path(output_dir)

    def to_csv(self, path=None):
        """The table as CSV text, written to `path` if given (no pandas needed)."""
        buf = io.StringIO()
        w = csv.DictWriter(buf, COLUMNS, lineterminator="\n")
        w.writeheader()
        w.writerows(self)
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text(buf.getvalue())
        return buf.getvalue()

    def to_pandas(self):
        """The table as a pandas DataFrame (pandas must be installed)."""
        try:
            import pandas
        except ImportError:
            raise ImportError("to_pandas needs pandas (pip install pandas); to_csv() needs "
                              "nothing") from None
        return pandas.DataFrame(list(self), columns=COLUMNS)

    def plot(self, out_dir=None):
        """Figure 1 of these runs (plots.figure1: (a) the loss under each randomization,
        (b) time to overfit and (c) test error vs p) as figure1.png/.pdf in out_dir (default:
        output_dir); returns its numbers, "files" included."""
        done = [(p, r) for p, r in self.pairs if r is not None]
        return plots.figure1(done, Path(out_dir or self.output_dir))

    def __repr__(self):
        head = ("randomization", "p", "seed", "epochs_to_fit", "train_acc", "test_acc")
        lines = ["  ".join(f"{h:>13}" for h in head)]
        for r in self:
            lines.append("  ".join(f"{r[h]:>13g}" if h == "p" else f"{_fmt(r[h]):>13}"
                                   for h in head))
        return "\n".join(lines)


def _fmt(v):
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def _source(data, dataset):
    """(dataset, data_dir, arrays) of the `data` argument."""
    if isinstance(data, (tuple, list)):
        if len(data) != 4:
            raise ValueError("data: pass (x_train, y_train, x_test, y_test), a class-folder "
                             "directory, or a .npz file")
        return "numpy", None, tuple(data)
    if not isinstance(data, (str, os.PathLike)):
        raise ValueError(f"data: a {type(data).__name__}; pass (x_train, y_train, x_test, "
                         "y_test), a class-folder directory, or a .npz file")
    path = os.path.expanduser(os.fspath(data))
    if dataset is None:
        if os.path.isfile(path):
            dataset = "numpy"
        elif os.path.isdir(os.path.join(path, "train")):
            dataset = "folder"
        elif os.path.isdir(path):
            dataset = "cifar10"
        else:
            raise ValueError(f"data: {path} does not exist")
    if dataset not in grids.DATASETS:
        raise ValueError(f"dataset={dataset!r}: choose one of {', '.join(grids.DATASETS)}")
    return dataset, path, None


def _model_name(model, name):
    """The model's name in configs: a built-in name or reference as given; a function object
    registered under `name` or its module:qualname."""
    if isinstance(model, str):
        return model
    import keras
    if isinstance(model, keras.Model):
        raise ValueError("model: pass the function that builds the model (each run needs a "
                         "fresh one), not a built keras.Model")
    if not callable(model):
        raise ValueError(f"model: a {type(model).__name__}; pass a model name, "
                         "'module:function', or a function that builds a Keras model")
    return user_model.register(name or user_model.reference_of(model), model)


def randomization_test(model, data, randomizations=("none", "labels"), corruptions=(),
                       epochs=None, *, recipe=None, learning_rate=None, lr_decay=None,
                       seed=0, seeds=1, train_size=None, test_size=None, batch_size=128,
                       dataset=None, output_dir="runs/api", name=None, overwrite=False,
                       verbose=True):
    """Trains `model` on `data` under each randomization (RANDOMIZATIONS: none, labels,
    shuffled_pixels, random_pixels, gaussian) and each label corruption p in `corruptions`,
    each with `seeds` seeds from `seed`, every run stopping once it fits its training set
    (at the latest after `epochs`); returns Results (one row per run).

    recipe: the built-in family ('mlp', 'alexnet', 'inception', 'wrn', 'linear') whose
    learning rate and decay your model trains with; or give learning_rate and lr_decay
    (and epochs).  train_size/test_size: the first n examples (class-balanced)/test images.
    Finished runs in output_dir are returned as they are (overwrite=True retrains them)."""
    unknown = [r for r in randomizations if r not in RANDOMIZATIONS]
    if unknown:
        raise ValueError(f"randomizations: unknown {unknown}; choose from {RANDOMIZATIONS}")
    bad = [p for p in corruptions if not 0.0 <= float(p) <= 1.0]
    if bad:
        raise ValueError(f"corruptions: {bad} are not probabilities in [0, 1]")
    model = _model_name(model, name)
    dataset, data_dir, arrays = _source(data, dataset)
    src = grids.source(dataset, data_dir, recipe, arrays=arrays)
    s = src.scale(scales.scale("paper").capped(train_size, test_size, epochs))
    mine = {}
    if user_model.is_reference(model):
        mine = {k: v for k, v in (("learning_rate", learning_rate), ("lr_decay", lr_decay))
                if v is not None}
    elif recipe is not None or lr_decay is not None or learning_rate is not None:
        raise ValueError(f"recipe, learning_rate and lr_decay are for your own model; "
                         f"{model} trains with its own family's recipe")
    common = dict(batch_size=batch_size, test_every=1, **s.figure1_overrides(model), **mine)
    points = []
    for sd in grids.seed_list(seed, seeds):
        for r in randomizations:
            t, d = src.configs(s, model, data_dir, sd, randomize=r, **common)
            points.append(grids.point(t, d, part="a", model=model, randomize=r))
        for p in corruptions:
            t, d = src.configs(s, model, data_dir, sd, corrupt=float(p), **common)
            points.append(grids.point(t, d, part="bc", model=model, corrupt=float(p)))
    return _run(points, output_dir, arrays, overwrite, verbose)


def _run(points, output_dir, arrays, overwrite, verbose):
    from rethinkgen_tf.data import load
    pairs, rows, seen = [], [], set()
    for k, p in enumerate(points):
        d = suite.run_dir(p, output_dir)
        if verbose:
            print(f"api: run {k + 1}/{len(points)}: {d}", flush=True)
        cfg = dataclasses.replace(p.train, overwrite=overwrite and d not in seen)
        res = train.run(cfg, p.data, d, data=lambda p=p: load(p.data, arrays))
        res = {**res, "run_dir": str(d)}
        pairs.append((p, res))
        if d not in seen:
            rows.append(_row(p, res, d))
        seen.add(d)
    return Results(rows, pairs, output_dir)


def _row(p, res, d):
    f = res.get("final") or {}
    tag = p.tag
    if tag["part"] == "a":
        r = tag["randomize"]
        prob = 1.0 if r == "labels" else 0.0
    else:
        prob = tag["corrupt"]
        r = "labels" if prob else "none"
    return {"model": tag["model"], "randomization": r, "p": prob, "seed": tag["seed"],
            "epochs_to_fit": res.get("overfit_epoch"), "epochs": res.get("epochs"),
            "train_acc": f.get("train_eval_acc"), "test_acc": f.get("test_acc"),
            "status": res.get("status"), "run_dir": str(d)}
