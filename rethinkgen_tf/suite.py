"""Grids of runs for the paper's figures and tables.

Every point of a grid is an ordinary training run (``rethinkgen_tf.train.run``)
in its own directory under ``output_dir``, named after its settings plus a
hash of its resolved configuration, so

  * re-running a suite skips finished runs and resumes interrupted ones;
  * a grid can be split across processes or machines with ``shard=(i, n)``
    (point k goes to shard k mod n) and merged afterwards by copying the run
    directories into one place (``merge``): names never collide;
  * figures and tables are drawn from the saved results alone.
"""
import dataclasses
import hashlib
import json
import os
import shutil
import time
from pathlib import Path

from rethinkgen_tf import results, train
from rethinkgen_tf.data import DataConfig

SCALES = ("paper", "cpu")


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


def config_key(p):
    """Hash of the resolved configuration (what determines the result).

    Only settings that differ from their defaults enter the hash, so a newer
    version that adds a setting (with a default) keeps finding finished runs."""
    defaults = {f.name: f.default for f in dataclasses.fields(train.TrainConfig)}
    cfg = dataclasses.replace(p.train.resolved(),
                              **{k: defaults[k] for k in train.RESULT_NEUTRAL})
    blob = json.dumps({"train": _non_default(cfg), "data": _non_default(p.data)},
                      sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:10]


def _non_default(obj):
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)
            if getattr(obj, f.name) != f.default}


def run_dir(p, output_dir):
    return Path(output_dir) / f"{results.run_name(p.train, p.data)}-{config_key(p)}"


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
    todo = [p for p in mine if overwrite or results.load_result(run_dir(p, output_dir)) is None]
    print(f"suite: {len(points)} runs in the grid, {len(mine)} in shard {shard[0]}/{shard[1]}, "
          f"{len(mine) - len(todo)} finished already, {len(todo)} to run -> {output_dir}",
          flush=True)
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

    res = train.run(cfg, p.data, d, data=data)
    if started:
        progress["spent"] += time.time() - started[0]
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
    """Copies finished run directories from other suite directories (shards).

    ValueError if a source is not a directory; StateError if a result.json
    in it is damaged.  A run directory is copied whole to a temporary name and
    then renamed, so a kill never leaves half a run behind."""
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
            results.load_result(res.parent)  # StateError if damaged
            dst = output_dir / res.parent.name
            if (dst / "result.json").exists():
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
                        "folders); default: tensorflow-datasets.")
    flags.DEFINE_string("output_dir", default_output, "Suite directory: one run directory per "
                        "grid point, plus the figures and tables.")
    flags.DEFINE_string("shard", "0/1", "Run only points k with k mod n == i (i/n), e.g. on n "
                        "machines; merge with --merge_from and --plot_only.")
    flags.DEFINE_list("merge_from", [], "Suite directories (other shards) whose finished runs "
                      "are copied into --output_dir first.")
    flags.DEFINE_bool("plot_only", False, "Draw from the saved results; train nothing.")
    flags.DEFINE_bool("overwrite", False, "Redo finished runs.")
    flags.DEFINE_integer("seed", 0, "Seed of the data randomization and weight init.")
    flags.DEFINE_integer("seeds", 1, "Run every grid point with this many seeds: --seed, "
                         "--seed + 1, ...; each seed is its own run, and the figures and tables "
                         "show the mean and standard deviation over seeds.", lower_bound=1)


def main(points_fn, draw_fn):
    """Runs the grid from `points_fn(flags)` (unless --plot_only), then draws.

    Run under `rethinkgen_tf.entry.run`, which makes every error one line."""
    from absl import flags
    F = flags.FLAGS
    shard = parse_shard(F.shard)
    points = points_fn(F)
    if not points:
        raise ValueError("the grid is empty: check --models and --parts")
    for p in points:
        p.train.validate()
    if F.merge_from:
        print(f"suite: merged {merge(F.merge_from, F.output_dir)} finished runs", flush=True)
    if not F.plot_only:
        run_grid(points, F.output_dir, shard, F.overwrite, data_cache={})
    pairs = collect(points, F.output_dir)
    missing = sum(res is None for _, res in pairs)
    if missing == len(pairs):
        raise ValueError(f"no finished runs of this grid in {F.output_dir}; run it without "
                         "--plot_only (or --merge_from the shards' directories) first")
    if missing:
        print(f"suite: {missing} of {len(pairs)} runs not finished yet; drawing what exists")
    out = draw_fn(pairs, F.output_dir)
    print(json.dumps(out, indent=1, default=str))
