"""Grids of runs for the paper's figures and tables.

Every point of a grid is an ordinary training run (``rethinkgen_tf.train.run``)
in its own directory under ``output_dir``, named after its settings plus a
hash of its resolved configuration, so

  * re-running a suite skips finished runs and resumes interrupted ones;
  * a grid can be split across processes or machines with ``shard=(i, n)``
    (point k goes to shard k mod n) and merged afterwards by copying the run
    directories into one place (``merge``): names never collide;
  * figures and tables are drawn from the saved results alone;
  * a run whose loss became non-finite ends with result.json status "diverged"
    (`results.diverged`): it is done like a finished run (not retrained unless
    overwrite), and the figures and tables show it as diverged, not as a number.
"""
import dataclasses
import hashlib
import json
import os
import shutil
import time
from pathlib import Path

from rethinkgen_tf import recipes, results, scales, train
from rethinkgen_tf.data import DataConfig

SCALES = tuple(scales.SCALES)
# The suites' smallest useful runs, seconds each (docs/experiments.md#smoke-tests).
SMOKE = "--train_size=100 --test_size=100 --max_epochs=2"


@dataclasses.dataclass(frozen=True)
class Point:
    """One run of a grid; `tags` say what it is in the figure (model, p, ...)."""
    tags: tuple  # sorted (key, value) pairs
    train: train.TrainConfig
    data: DataConfig

    @property
    def tag(self):
        return dict(self.tags)


def point(train_config, data_config, **tags):
    """A Point tagged with `tags` and its seed (train_config.seed)."""
    return Point(tuple(sorted({"seed": train_config.seed, **tags}.items())), train_config,
                 data_config)


def config_key(p, legacy=False):
    """Hash of the resolved configuration (what determines the result).

    Only settings that differ from their defaults enter the hash, so a newer
    version that adds a setting (with a default) keeps finding finished runs.
    Where the data lies (DataConfig.data_dir) is not part of it: the same point
    trained from a copy of the dataset elsewhere is the same point, so records
    committed from one machine count on another (a run's config.json holds the
    fingerprint of the data it used).  legacy=True: the key of earlier versions,
    which hashed data_dir too (`run_dir` still finds such directories)."""
    defaults = {f.name: f.default for f in dataclasses.fields(train.TrainConfig)}
    cfg = dataclasses.replace(p.train.resolved(),
                              **{k: defaults[k] for k in train.RESULT_NEUTRAL})
    data = _non_default(p.data)
    if not legacy:
        data.pop("data_dir", None)
    blob = json.dumps({"train": _non_default(cfg), "data": data}, sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:10]


def _non_default(obj):
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)
            if getattr(obj, f.name) != f.default}


def run_dir(p, output_dir):
    """The point's run directory in output_dir: named after its settings and config_key;
    a directory of an earlier version's key (with the data's path in it) where only that
    one exists, so suites started before keep their runs."""
    name = results.run_name(p.train, p.data)
    new = Path(output_dir) / f"{name}-{config_key(p)}"
    if p.data.data_dir is not None and not new.exists():
        old = Path(output_dir) / f"{name}-{config_key(p, legacy=True)}"
        if old.exists():
            return old
    return new


def parse_shard(text):
    """'i/n' -> (i, n), 0 <= i < n."""
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard must look like i/n (e.g. 0/4), got {text!r}") from None
    if not 0 <= i < n:
        raise ValueError(f"--shard={text}: need 0 <= i < n")
    return i, n


def run_grid(points, output_dir, shard=(0, 1), overwrite=False, data_cache=None):
    """Runs this shard's points (skipping finished ones); returns their results.

    Several processes may run the same grid on one output_dir at once (two
    terminals, or machines sharing a filesystem): each point's run directory
    has one writer (`results.RunLock`), a point another process is training is
    passed over, and at the end this process waits for those and collects
    their results (training any whose process died).  Each point is trained
    once, and the results are those of one process.

    Prints which run of how many is going and an estimate of the time left,
    from the runs trained so far in this process.
    """
    mine = [p for k, p in enumerate(points) if k % shard[1] == shard[0]]
    ended = {k: results.load_result(run_dir(p, output_dir)) for k, p in enumerate(mine)}
    todo = [p for k, p in enumerate(mine) if overwrite or ended[k] is None]
    n_div = 0 if overwrite else len({run_dir(p, output_dir) for k, p in enumerate(mine)
                                     if results.diverged(ended[k])})

    def runs(ps):  # points of two panels may be one run (Figure 1's p = 0): count runs
        return len({run_dir(p, output_dir) for p in ps})
    print(f"suite: {runs(points)} runs in the grid, {runs(mine)} in shard {shard[0]}/{shard[1]}, "
          f"{runs(mine) - runs(todo)} finished already"
          f"{f' ({n_div} of them diverged)' if n_div else ''}, {runs(todo)} to run -> "
          f"{output_dir}", flush=True)
    progress = {"spent": 0.0, "trained": 0}
    out, taken = {}, []
    for k, p in enumerate(mine):
        d = run_dir(p, output_dir)
        done = _load(d)
        if done is not None and not overwrite:
            out[k] = (p, done)
            continue
        try:
            out[k] = (p, _train(p, d, overwrite, data_cache, progress, len(todo)))
        except results.RunLocked as e:
            print(f"suite: {d.name} is being trained by process {e.pid}; passing over it",
                  flush=True)
            taken.append(k)
    for k in taken:  # the points other processes took: wait for them
        p, d = mine[k], run_dir(mine[k], output_dir)
        print(f"suite: waiting for {d.name} (process {results.holder(d)})", flush=True)
        with results.RunLock(d, wait=True):
            pass
        # finished by its owner: train.run returns the result; if it died, resume it
        out[k] = (p, _train(p, d, False, data_cache, progress, len(todo)))
    return [out[k] for k in sorted(out)]


def _train(p, d, overwrite, data_cache, progress, total):
    """One point through train.run, with the suite's progress lines."""
    t0 = time.time()
    cfg = dataclasses.replace(p.train, overwrite=overwrite)
    started = []

    def data():  # called by train.run only if it trains (under the run's lock)
        progress["trained"] += 1
        n, spent = progress["trained"], progress["spent"]
        eta = f", about {_fmt(spent / (n - 1) * max(0, total - n + 1))} left" if n > 1 else ""
        print(f"suite: run {n}/{total}: {d.name} {p.tag}{eta}", flush=True)
        started.append(time.time())
        return _data(p.data, data_cache)

    res = train.run(cfg, p.data, d, data=data)  # a diverged run returns its result too
    if started:
        progress["spent"] += time.time() - started[0]
    if results.diverged(res):
        print(f"suite: {d.name} diverged: the {res.get('diverged_what', 'loss')} became "
              f"{res.get('diverged_value', 'non-finite')} in epoch {res.get('diverged_epoch')}; "
              "shown as diverged, and not retrained on a rerun unless --overwrite", flush=True)
    elif started:
        f = res.get("final") or {}
        print(f"suite: done {d.name}: train acc {f.get('train_eval_acc', float('nan')):.4f}, "
              f"test acc {f.get('test_acc', float('nan')):.4f}, overfit step "
              f"{res.get('overfit_step')}, {_fmt(time.time() - t0)}", flush=True)
    return {**res, "run_dir": str(d)}


def _data(data_config, cache):
    """Loads (or reuses) the Data for a config; runs of a grid share data."""
    from rethinkgen_tf.data import load
    if cache is None:
        return load(data_config)
    if data_config not in cache:
        cache.clear()  # keep one dataset in memory at a time
        cache[data_config] = load(data_config)
    return cache[data_config]


def collect(points, output_dir):
    """[(point, result or None)] from disk, without training."""
    return [(p, _load(run_dir(p, output_dir))) for p in points]


def _load(d):
    res = results.load_result(d)
    return None if res is None else {**res, "run_dir": str(d)}


def merge(sources, output_dir):
    """Copies finished (or diverged) run directories from other suite directories
    (shards); returns how many it copied.

    ValueError if a source is not a directory.  A source run that `check_source`
    finds damaged (result.json or metrics.csv unreadable, or the two disagreeing, e.g.
    a truncated metrics.csv) is skipped with one line naming it: it is not counted,
    and the grid trains it again where it is missing.  A run directory is copied whole
    to a temporary name and then renamed, so a kill never leaves half a run behind."""
    output_dir = Path(output_dir)
    for src in sources:
        if not Path(src).is_dir():
            what = "is a file" if Path(src).exists() else "does not exist"
            raise ValueError(f"--merge_from={src} {what}; pass suite output directories "
                             "(each holding run directories)")
    output_dir.mkdir(parents=True, exist_ok=True)
    copied = 0
    for src in sources:
        for res in sorted(Path(src).glob("*/result.json")):
            dst = output_dir / res.parent.name
            if (dst / "result.json").exists():
                continue
            try:
                check_source(res.parent)
            except (results.StateError, OSError) as e:
                print(f"suite: --merge_from: skipped {res.parent}, not merged: {e}", flush=True)
                continue
            with results.RunLock(dst):
                results.remove_strays(dst)  # a killed merge's copy
                tmp = dst / f".merge{results.TMP_TAG}{os.getpid()}"
                shutil.copytree(res.parent, tmp,
                                ignore=shutil.ignore_patterns(".lock", f".*{results.TMP_TAG}*"))
                for f in sorted(tmp.iterdir(), key=lambda f: f.name == "result.json"):
                    target = dst / f.name  # result.json last: it marks the run finished
                    if target.is_dir():
                        shutil.rmtree(target)
                    os.replace(f, target)
                tmp.rmdir()
            copied += 1
    return copied


def check_source(d):
    """The result of run directory d, checked for a merge: StateError (one line naming
    the file) if result.json or metrics.csv is damaged, or if they disagree: metrics.csv
    must hold result.json's "epochs" rows, the last of them its "final" row."""
    res = results.load_result(d)
    if res is None:
        raise results.StateError(f"{Path(d) / 'result.json'} does not exist")
    rows = results.read_metrics(d)
    path = Path(d) / "metrics.csv"
    epochs, final = res.get("epochs"), res.get("final")
    if isinstance(epochs, int) and len(rows) != epochs:
        what = "is missing" if not path.exists() else f"has {len(rows)} rows"
        raise results.StateError(f"{path} {what} but result.json says {epochs} epochs (a "
                                 "truncated or replaced copy)")
    if isinstance(final, dict) and not (rows and _same_row(final, rows[-1])):
        raise results.StateError(f"{path}: its last row is not result.json's final row "
                                 "(a truncated or replaced copy)")
    return res


def _same_row(a, b):
    """Whether two metrics rows agree on the columns both have (NaN equals NaN)."""
    def same(x, y):
        return x == y or (isinstance(x, float) and isinstance(y, float) and x != x and y != y)
    return all(same(a[k], b[k]) for k in a.keys() & b.keys())


def _fmt(seconds):
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 \
        else f"{seconds // 60}m{seconds % 60:02d}s"


# ---- the command line shared by experiments/figure1.py, table1.py, implicit.py
def define_flags(default_output):
    from absl import flags
    flags.DEFINE_enum("scale", "cpu", SCALES, "paper: full CIFAR-10 and the paper's schedules; "
                      "cpu: class-balanced subsets sized to finish in about an hour on a 2-core "
                      "CPU (see docs/experiments.md).")
    flags.DEFINE_string("data_dir", None, "Local CIFAR-10 (pickle/binary batches or class "
                        "folders); default: tensorflow-datasets. --dataset=folder: "
                        "<dir>/{train,test}/<class>/ images; --dataset=numpy: a .npz of x_train, "
                        "y_train, x_test, y_test.")
    flags.DEFINE_enum("dataset", "cifar10", ["cifar10", "folder", "numpy"], "The data: "
                      "CIFAR-10, or your own (class folders or a .npz, any image size and class "
                      "count, used at its own size; the cpu scale sizes its subsets by the "
                      "data's own input dimension).")
    flags.DEFINE_enum("recipe", None, list(recipes.RECIPES), "The training recipe of the "
                      "models given by reference (module:function): this family's learning "
                      "rate and decay.")
    flags.DEFINE_string("output_dir", default_output, "Suite directory: one run directory per "
                        "grid point, plus the figures and tables.")
    flags.DEFINE_string("shard", "0/1", "Run only points k with k mod n == i (i/n), e.g. on n "
                        "machines; merge with --merge_from and --plot_only.")
    flags.DEFINE_list("merge_from", [], "Suite directories (other shards) whose finished runs "
                      "are copied into --output_dir first.")
    flags.DEFINE_bool("plot_only", False, "Draw from the saved results; train nothing.")
    flags.DEFINE_bool("train_only", False, "Train this shard's points; draw nothing (the "
                      "tasks of a Slurm array, where a final job draws with --plot_only: "
                      "cluster/slurm/, docs/cluster.md).")
    flags.DEFINE_bool("overwrite", False, "Redo finished runs.")
    flags.DEFINE_integer("seed", 0, "Seed of the data randomization and weight init.")
    flags.DEFINE_integer("seeds", 1, "Run every grid point with this many seeds: --seed, "
                         "--seed + 1, ...; each seed is its own run, and the figures and tables "
                         "show the mean and standard deviation over seeds.", lower_bound=1)
    flags.DEFINE_integer("train_size", None, "Every run trains on the first n training "
                         "examples (class-balanced) instead of the scale's size per model. Like "
                         "--test_size and --max_epochs it is part of each run's identity (its "
                         "directory), so such runs never mix with the scale's own. A smoke test "
                         f"in a minute or two: {SMOKE} (docs/experiments.md#smoke-tests).",
                         lower_bound=1)
    flags.DEFINE_integer("test_size", None, "Every run tests on the first n test images "
                         "instead of the scale's.", lower_bound=1)
    flags.DEFINE_integer("max_epochs", None, "Every run trains at most this many epochs (a cap "
                         "on the scale's epochs, and on Table 1's caps).", lower_bound=1)
    flags.DEFINE_enum("precision", "float32", list(train.PRECISIONS),
                      "Every run's precision: float32, or bf16 (bfloat16 compute, float32 "
                      "weights and logits; faster convnets on CPUs with AVX-512 BF16, "
                      "docs/benchmarks.md). Part of each run's identity.")


def scale_of(F):
    """The scales.Scale of the parsed flags: --scale with --train_size, --test_size and
    --max_epochs applied (Scale.capped)."""
    return scales.scale(F.scale).capped(F.train_size, F.test_size, F.max_epochs)


def with_precision(points, precision):
    """The points with every run's TrainConfig.precision set to `precision`."""
    return [dataclasses.replace(p, train=dataclasses.replace(p.train, precision=precision))
            for p in points]


def main(points_fn, draw_fn):
    """Runs the grid from `points_fn(flags)` (unless --plot_only), then draws (unless
    --train_only).

    Run under `rethinkgen_tf.entry.run`, which makes every error one line."""
    from absl import flags
    F = flags.FLAGS
    shard = parse_shard(F.shard)
    if F.plot_only and F.train_only:
        raise ValueError("--plot_only and --train_only exclude each other; pass one of them")
    points = with_precision(points_fn(F), F.precision)
    if not points:
        chosen = " and ".join(f"--{f}" for f in ("models", "parts") if f in F)
        raise ValueError(f"the grid is empty: check {chosen or 'the flags'}")
    for p in points:
        p.train.validate()
    if F.merge_from:
        print(f"suite: merged {merge(F.merge_from, F.output_dir)} finished runs", flush=True)
    if not F.plot_only:
        run_grid(points, F.output_dir, shard, F.overwrite, data_cache={})
    if F.train_only:
        return
    pairs = collect(points, F.output_dir)
    missing = sum(res is None for _, res in pairs)
    if missing == len(pairs):
        raise ValueError(f"no finished runs of this grid in {F.output_dir}; run it without "
                         "--plot_only (or --merge_from the shards' directories) first")
    if missing:
        print(f"suite: {missing} of {len(pairs)} runs not finished yet; drawing what exists")
    diverged = sum(results.diverged(res) for _, res in pairs)
    if diverged:
        print(f"suite: {diverged} of {len(pairs)} runs diverged (their loss became non-finite): "
              "the figures and tables show them as diverged and leave them out of the means")
    out = draw_fn(pairs, F.output_dir)
    print(json.dumps(out, indent=1, default=str))
