"""The reproduction numbers in the docs, from the committed run records (no training).

`docs/results/` holds the compact record of every run whose number the README or the
docs quote: for a training run `<experiment>/<run directory>/{config.json, metrics.csv,
result.json}` (and `examples.npz` where a committed picture is drawn from it), for a
suite the same per point, for the kernel and Theorem 1 experiments their summary JSON.

    export(["runs/figure1/cifar10_mlp_1x512_s0-ab12..."], "docs/results/figure1_cpu")
    generate()        # {region name: markdown} from the records
    write_docs()      # fills the docs' generated regions and redraws docs/figures
    problems()        # [] when every quoted number equals its record's

A table (or sentence) the docs quote verbatim sits between ``<!-- report:NAME -->`` and
``<!-- /report:NAME -->``; numbers quoted in prose outside those regions are `CLAIMS`:
a template whose fields are computed from the records, which must appear in the doc
exactly as formatted.  `problems` also fails on a decimal percentage or ratio in a
checked doc that neither a region, a claim nor `NOT_REPRODUCTIONS` accounts for.
"""
import dataclasses
import functools
import math
import os
import re
import shutil
from pathlib import Path

import numpy as np

from rethinkgen_tf import results

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path("docs/results")
FIGURES = Path("docs/figures")
DOCS = ("README.md", "docs/experiments.md", "docs/theory.md", "docs/training.md",
        "docs/results.md", "docs/runplan.md")
# the docs whose every decimal percentage or ratio must be accounted for (docs/results.md
# quotes numbers only as examples of the check; docs/runplan.md holds generated tables and
# estimates of time)
SCANNED = DOCS[:4]
RECORD_FILES = ("config.json", "metrics.csv", "result.json")
EXAMPLES_LIMIT = 4 << 20  # bytes: larger examples.npz are not committed


# ------------------------------------------------------------------ export
def export(sources, to, examples=False):
    """Copies each finished run directory's compact record (RECORD_FILES, and
    examples.npz if `examples` and at most EXAMPLES_LIMIT bytes) to `to/<its name>/`,
    or each summary file (a kernel or Theorem 1 JSON, with its .log beside it if any) to
    `to/`.  A run directory is checked first (suite.check_source: result.json and
    metrics.csv readable and agreeing) and copied through a temporary directory, so `to`
    never holds half a record.  Returns the paths written.  ValueError (one line) for a
    source that is neither."""
    from rethinkgen_tf import suite
    to = Path(to)
    to.mkdir(parents=True, exist_ok=True)
    out = []
    for src in map(Path, sources):
        if src.is_file():
            for f in [src] + [g for g in [src.with_suffix(".log")] if g.is_file() and g != src]:
                shutil.copyfile(f, to / f.name)
                out.append(to / f.name)
            continue
        if not (src / "result.json").is_file():
            raise ValueError(f"--export={src}: not a finished run directory (no result.json) "
                             "nor a summary file; export finished runs only")
        suite.check_source(src)
        files = list(RECORD_FILES)
        npz = src / "examples.npz"
        if examples and npz.is_file():
            if npz.stat().st_size > EXAMPLES_LIMIT:
                raise ValueError(f"{npz} is {npz.stat().st_size >> 20} MiB, over the "
                                 f"{EXAMPLES_LIMIT >> 20} MiB kept in docs/results; export "
                                 "without --examples")
            files.append("examples.npz")
        dst = to / src.name
        tmp = to / f".{src.name}{results.TMP_TAG}{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        for name in files:
            if (src / name).is_file():
                shutil.copyfile(src / name, tmp / name)
        shutil.rmtree(dst, ignore_errors=True)
        os.replace(tmp, dst)
        out.append(dst)
    return out


# ------------------------------------------------------------------ reading records
class Records:
    """The committed records under `root` (docs/results), read once each."""

    def __init__(self, root=None):
        self.root = Path(root) if root is not None else ROOT / RESULTS

    @functools.lru_cache(maxsize=None)  # noqa: B019 (one Records per check)
    def json(self, rel):
        path = self.root / rel
        if not path.is_file():
            raise MissingRecord(f"{path} does not exist")
        return results.read_json(path)

    @functools.lru_cache(maxsize=None)  # noqa: B019
    def runs(self, experiment):
        """[Run] of the finished run directories under root/experiment, by name."""
        d = self.root / experiment
        if not d.is_dir():
            raise MissingRecord(f"{d} does not exist")
        out = [Run(p.parent) for p in sorted(d.glob("*/result.json"))]
        if not out:
            raise MissingRecord(f"{d} holds no run records")
        return out

    def run(self, experiment, name):
        for r in self.runs(experiment):
            if r.dir.name == name:
                return r
        raise MissingRecord(f"{self.root / experiment / name} does not exist")


class MissingRecord(LookupError):
    """A record a table or claim needs is not in docs/results."""


@dataclasses.dataclass
class Run:
    dir: Path

    @functools.cached_property
    def config(self):
        return results.read_json(self.dir / "config.json")

    @functools.cached_property
    def result(self):
        return {**results.load_result(self.dir), "run_dir": str(self.dir)}

    @functools.cached_property
    def rows(self):
        return results.read_metrics(self.dir)

    @property
    def final(self):
        return self.result.get("final") or {}

    def tags(self):
        """The suite tags of this run, from its config (what plots.* group by)."""
        t, d = self.config["train"], self.config["data"]
        model = t["model"] + ("_nobn" if t.get("batchnorm") is False and
                              t["model"] == "inception" else "")
        return {"model": model, "seed": t.get("seed", 0), "corrupt": d.get("corrupt", 0.0),
                "randomize": d.get("randomize", "none"),
                "crop": d.get("augment", "none") == "crop", "wd": bool(t.get("weight_decay")),
                "random_labels": d.get("randomize") == "labels"}


def _pairs(runs, part_keys):
    """[(suite.Point-like, result)] for plots.*: tags from each run's config."""
    from rethinkgen_tf.suite import Point
    out = []
    for r in runs:
        tags = {k: v for k, v in r.tags().items() if k in part_keys}
        out.append((Point(tuple(sorted(tags.items())), None, None), r.result))
    return out


def figure1_pairs(runs):
    """Figure 1's (point, result) pairs from a suite's records: runs with a randomization
    are (a); true-label runs are (b, c), and also (a)'s true-label curve where (a) exists."""
    from rethinkgen_tf.suite import Point
    a_models = {r.tags()["model"] for r in runs if r.tags()["randomize"] != "none"}
    at_1 = {(r.tags()["model"], r.tags()["seed"]) for r in runs
            if r.tags()["randomize"] == "none" and r.tags()["corrupt"] == 1.0}
    bc_models = {r.tags()["model"] for r in runs if r.tags()["randomize"] == "none"
                 and r.tags()["corrupt"] > 0}
    out = []
    for r in runs:
        t = r.tags()
        base = {"model": t["model"], "seed": t["seed"]}
        if t["randomize"] != "none":
            tags = [{**base, "part": "a", "randomize": t["randomize"]}]
            if t["randomize"] == "labels" and t["model"] in bc_models \
                    and (t["model"], t["seed"]) not in at_1:
                # p = 1 of (b, c) trains on these very labels (corrupting every label draws
                # them as random labels do: the configs' data fingerprints agree)
                tags.append({**base, "part": "bc", "corrupt": 1.0})
        else:
            tags = [{**base, "part": "bc", "corrupt": t["corrupt"]}]
            if t["corrupt"] == 0 and t["model"] in a_models:
                tags.append({**base, "part": "a", "randomize": "none"})
        out += [(Point(tuple(sorted(g.items())), None, None), r.result) for g in tags]
    # (a) first, as the grid orders it
    return sorted(out, key=lambda pr: pr[0].tag["part"] != "a")


# ------------------------------------------------------------------ formatting
def pct(x, digits=1):
    return f"{100 * x:.{digits}f}"


def mean_std(values):
    v = np.asarray([x for x in values if x is not None], dtype=float)
    if not len(v):
        return None, None, 0
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0, len(v)


def pm(values, scale=1.0, digits=2):
    m, s, n = mean_std(values)
    if n == 0:
        return "—"
    return f"{scale * m:.{digits}f}" if n == 1 else f"{scale * m:.{digits}f} ± {scale * s:.{digits}f}"


def md_table(head, rows):
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(map(str, r)) + " |" for r in rows])


def _n(x):
    return f"{x:,}"


# ------------------------------------------------------------------ the tables
def linear_control(R):
    """docs/experiments.md: the linear model on random labels at n = 1,000 .. 10,000."""
    rows = []
    for r in sorted(R.runs("linear_control"), key=lambda r: r.result["num_train"]):
        n = r.result["num_train"]
        rows.append([_n(n), f"{n / 2352:.2g}", f"{pct(r.final['train_eval_acc'], 2)}%",
                     f"{pct(r.final['test_acc'], 2)}%", r.result["epochs"]])
    return md_table(["n", "n / 2,352", "random labels fit (train accuracy)",
                     f"test accuracy ({_n(R.runs('linear_control')[0].result['num_test'])} "
                     "images)", "epochs"], rows)


def _seeds(groups):
    """'seeds 0, 1' or 'seeds 0, 1 (1-2 per point)' for {seed: run} per point."""
    groups = [g for g in groups if g]
    seeds = sorted({s for g in groups for s in g})
    per = sorted({len(g) for g in groups})
    word = "seed" if len(seeds) == 1 else "seeds"
    extra = f" ({per[0]}-{per[-1]} per point)" if len(per) > 1 else ""
    return f"{word} {', '.join(map(str, seeds))}{extra}"


def figure1_table(R, experiment, models=None):
    """Figure 1 (b, c) per p: slowdown and test error, mean ± std over seeds, the paper's
    values beside where the paper states them."""
    from rethinkgen_tf.plots import PAPER_SLOWDOWN_AT_1, PAPER_TEST_ERROR_AT_0
    runs = [r for r in R.runs(experiment) if r.tags()["randomize"] == "none"]
    models = models or list(dict.fromkeys(r.tags()["model"] for r in runs))
    runs = [r for r in runs if r.tags()["model"] in models]
    if not runs:
        raise MissingRecord(f"no runs of {', '.join(models)} in {R.root / experiment}")
    ps = sorted({r.tags()["corrupt"] for r in runs})
    head = ["", *(f"p = {p:g}" for p in ps)]
    rows = []
    for m in models:
        mine = [r for r in runs if r.tags()["model"] == m]
        seeds = sorted({r.tags()["seed"] for r in mine})
        n = "/".join(sorted({_n(r.result["num_train"]) for r in mine}))
        at = {p: {r.tags()["seed"]: r for r in mine if r.tags()["corrupt"] == p} for p in ps}
        base = at.get(0.0, {})
        name = _model_name(m)
        slow, epochs = [], []
        for p in ps:
            rel = [r.result["overfit_step"] / base[s].result["overfit_step"]
                   for s, r in at[p].items()
                   if r.result.get("overfit_step") and s in base and base[s].result.get("overfit_step")]
            slow.append(pm(rel) if rel else "never fit")
            epochs.append(" / ".join(str(at[p][s].result.get("overfit_epoch") or "—")
                                     for s in seeds if s in at[p]))
        label = f"{name}, n = {n}, {_seeds(at.values())}"
        if any(s != "never fit" for s in slow):
            rows.append([f"(b) {label}: time to overfit / p = 0", *slow])
            rows.append([f"(b) {name}: epochs to fit, per seed", *epochs])
        else:
            acc = [pm([r.final["train_eval_acc"] for r in at[p].values()], 100, 1) for p in ps]
            rows.append([f"{label}: training accuracy at the end % (never fit)", *acc])
        tests = "/".join(sorted({_n(r.result["num_test"]) for r in mine}))
        rows.append([f"(c) {name}: test error % ({tests} test images)",
                     *(pm([1 - r.final["test_acc"] for r in at[p].values()], 100, 1) for p in ps)])
        if m in PAPER_TEST_ERROR_AT_0:
            rows.append([f"(c) {name}, paper",
                         *(f"{100 * PAPER_TEST_ERROR_AT_0[m]:.2f} (Table 1)" if p == 0 else
                           "about 90" if p == 1 else "" for p in ps)])
    lo, hi = PAPER_SLOWDOWN_AT_1
    rows.append(["(b) paper, all three models, at p = 1 (our reading of its figure)",
                 *(f"{lo:g}-{hi:g}x" if p == 1 else "" for p in ps)])
    return md_table(head, rows)


def table1_table(R, experiment):
    """Table 1 rows from a suite's records (plots.table1: ours beside the paper)."""
    import tempfile

    from rethinkgen_tf import plots
    pairs = _pairs(R.runs(experiment), ("model", "crop", "wd", "random_labels", "seed"))
    with tempfile.TemporaryDirectory() as d:
        return plots.table1(pairs, d)["markdown"]


def _model_name(m):
    from rethinkgen_tf.plots import MODEL_NAMES
    return MODEL_NAMES.get(m, m)


def theorem1_table(R):
    s = R.json("theory/theorem1_cifar10_random.json")["theorem1"]
    return md_table(["quantity", "value"], [[k, v] for k, v in _theorem1_rows(s)])


def _theorem1_rows(s):
    yield "n, d, classes, labels", f"{_n(s['n'])}, {_n(s['d'])}, {s['num_classes']}, {s['labels']}"
    yield "weights", (f"{_n(s['weights'])} = d + n + {s['num_classes']} n "
                      f"({_n(2 * s['n'] + s['d'])} = 2n + d per output)")
    yield "O(n) solve (float64)", f"{s['solve_seconds']:.1f} s (this run's time)"
    yield "min gap of sorted projections (unit a)", f"{s['min_gap']:.3g}"
    yield "Lemma 1 smallest eigenvalue min(x_i - b_i)", f"{s['lambda_min']:.3g}"
    yield ("max \\|A w - y\\| (prefix sums) / literal network",
           f"{s['residual_recurrence']:.2g} / {s['residual_network_float64']:.2g}")
    acc = [s.get(k) for k in ("train_acc_numpy_float64", "train_acc_keras_float64",
                              "train_acc_keras_float32")]
    yield ("training accuracy: NumPy float64 / Keras float64 / Keras float32",
           " / ".join("—" if a is None else f"{pct(a)}%" for a in acc))
    yield "test accuracy (true test labels)", f"{pct(s['test_acc_numpy_float64'])}%"
    w = s["norms"]
    yield "weight norms", (f"\\|a\\| = {w['a_l2']:.2g}, \\|b\\|_2 = {w['b_l2']:.2g}, "
                           f"\\|w\\|_2 = {w['w_l2']:.2g}, max \\|w\\| = {w['w_max_abs']:.2g}, "
                           f"\\|w\\|_1 = {w['w_l1']:.2g}")
    if s.get("deep"):
        dd = s["deep"]
        yield (f"depth-{dd['depth']} variant", f"{_n(dd['weights'])} weights, widths "
               f"{', '.join(map(_n, dd['widths']))}, {pct(dd['train_acc'])}% training "
               f"accuracy, max diff vs depth 2: {dd['max_diff_vs_depth2']:.2g}")


def theorem1_true(R):
    """The sentence on Theorem 1 with true labels (docs/theory.md)."""
    s = R.json("theory/theorem1_cifar10_true.json")["theorem1"]
    return (f"With true labels the same construction gives training accuracy "
            f"{pct(s['train_acc_numpy_float64'])}% as well (residual "
            f"{s['residual_network_float64']:.2g}) and {pct(s['test_acc_numpy_float64'])}% test "
            "accuracy (record `docs/results/theory/theorem1_cifar10_true.json`)")


def rademacher_table(R):
    s = R.json("theory/theorem1_cifar10_random.json")["rademacher"]
    rows = []
    for name, v in s.items():
        if not isinstance(v, dict) or "estimate" not in v:
            continue
        rows.append([_model_name(name) if name != "theorem1" else "Theorem 1 class",
                     _n(v["n"]), f"{v['estimate']:.4f}", ", ".join(f"{x:.3f}" for x in v["draws"])])
    return md_table(["class", "images", "estimate", "per draw: (1/n) sum sigma_i h(x_i)"], rows)


KERNEL_FULL = (("raw pixels", "kernel/cifar10_raw.json"),
               ("random conv, Gaussian filters, 16,384", "kernel/cifar10_conv16384.json"),
               ("random conv, Gaussian filters, 32,000 (the paper's count)", "kernel/cifar10_conv32000.json"),
               ("random conv, patch filters, 4,096, filter seed 0", "kernel/cifar10_patches4096.json"),
               ("random conv, patch filters, 4,096, filter seed 1", "kernel/cifar10_patches4096_fs1.json"),
               ("random conv, patch filters, 32,000, filter seed 0", "kernel/cifar10_patches32000.json"),
               ("random conv, patch filters, 32,000, filter seed 1", "kernel/cifar10_patches32000_fs1.json"))
# patch filters at n = 50,000, per filter seed: its runs, largest first (a larger run's curve
# holds the smaller one's points: --curve_with)
KERNEL_PATCHES = (("filter seed 0", ("kernel/cifar10_patches32000.json", "kernel/cifar10_patches4096.json")),
                  ("filter seed 1", ("kernel/cifar10_patches32000_fs1.json", "kernel/cifar10_patches4096_fs1.json")))
KERNEL_SUBSETS = (("raw pixels", "kernel_subsets/cifar10_raw_n5000.json"),
                  ("random conv, Gaussian filters, 1,024", "kernel_subsets/cifar10_conv1024_n5000.json"),
                  ("random conv, Gaussian filters, 4,096", "kernel_subsets/cifar10_conv4096_n5000.json"),
                  ("raw pixels", "kernel_subsets/cifar10_raw_n15000.json"))
PAPER_KERNEL = {"raw": ("46%", "—"), "random_conv": ("17% (32,000 filters)", "15%")}


def kernel_table(R):
    """Ours beside the paper (CIFAR-10): one row per committed kernel summary."""
    rows = []
    for name, rel in KERNEL_FULL + KERNEL_SUBSETS:
        try:
            s = R.json(rel)
        except MissingRecord:
            continue
        res = s["results"]
        ridge = res.get("true_ridge")
        paper = PAPER_KERNEL[s["features"]]
        rows.append([name, f"{_n(s['n'])} / {_n(s['test_n'])}",
                     f"{pct(res['true']['test_error'], 2)}% (sigma {s['bandwidth_factor']:g} x "
                     f"median, validation {pct(s['validation']['interpolation']['val_error'])}%)",
                     "—" if not ridge else f"{pct(ridge['test_error'], 2)}% (ridge "
                     f"{ridge['ridge']:g}, train error {pct(ridge['train_error'], 2)}%)",
                     "—" if "random" not in res else
                     f"{pct(res['random']['test_error'])}% (train error "
                     f"{pct(res['random']['train_error'], 0)})",
                     paper[0], paper[1], f"`{rel}`"])
    return md_table(["features", "n / test images", "interpolant: test error",
                     "validated ridge: test error", "random labels: test error",
                     "paper, interpolant", "paper, l2", "record (docs/results/)"], rows)


def kernel_curve_table(R):
    s = R.json("kernel/cifar10_conv32000.json")
    rows = [[_n(c["filters"]), f"{pct(c['test_error'], 2)}%", f"{pct(c['val_error'])}%",
             f"{c['bandwidth_factor']:g}", f"{pct(c['random_test_error'])}%"]
            for c in sorted(s["curve"], key=lambda c: c["filters"])]
    return md_table(["filters", "test error, interpolant", "validation error",
                     "sigma / median", "random labels: test error (train error 0)"], rows)


def _patch_runs(R):
    """[(seed name, its largest patch-filter summary at n = 50,000)] for the seeds with one."""
    runs = []
    for name, rels in KERNEL_PATCHES:
        for rel in rels:
            try:
                runs.append((name, R.json(rel)))
                break
            except MissingRecord:
                continue
    if not runs:
        raise MissingRecord("no patch-filter summaries in docs/results/kernel")
    return runs


def _spread(errs):
    """'mean% ± half the range' of two or more errors, else '—'."""
    return "—" if len(errs) < 2 else \
        f"{pct(sum(errs) / len(errs), 2)}% ± {pct((max(errs) - min(errs)) / 2, 2)}"


def kernel_patch_curve_table(R):
    """Patch filters at n = 50,000: the test error against the filter count for each filter
    seed (each point its own validated sigma; each seed's largest run), their mean and spread,
    and the Gaussian filters' curve at the same counts beside."""
    runs = _patch_runs(R)
    gauss = {c["filters"]: c["test_error"] for c in R.json("kernel/cifar10_conv32000.json")["curve"]}
    curves = [{c["filters"]: c for c in s["curve"]} for _, s in runs]
    rows = []
    for f in sorted(set().union(*curves)):
        errs = [c[f]["test_error"] for c in curves if f in c]
        cells = [f"{pct(c[f]['test_error'], 2)}%" if f in c else "—" for c in curves]
        rows.append([_n(f), *cells, _spread(errs), f"{pct(gauss[f], 2)}%" if f in gauss else "—"])
    sizes = {s["conv_filters"] for _, s in runs}
    ridge = [s["results"].get("true_ridge") for _, s in runs]
    at = f"at {_n(next(iter(sizes)))}" if len(sizes) == 1 else "at each seed's largest"
    rows.append([f"validated ridge {at}",
                 *["—" if r is None else f"{pct(r['test_error'], 2)}% (ridge {r['ridge']:g}"
                   + ("" if len(sizes) == 1 else f", {_n(s['conv_filters'])} filters") + ")"
                   for r, (_, s) in zip(ridge, runs)],
                 _spread([r["test_error"] for r in ridge]) if None not in ridge and len(sizes) == 1 else "—",
                 "—"])
    rows.append([f"random labels {at}",
                 *[f"{pct(s['results']['random']['test_error'])}% (train error "
                   f"{pct(s['results']['random']['train_error'], 0)})" for _, s in runs], "—", "—"])
    return md_table(["filters", *(f"patch filters, {name}" for name, _ in runs),
                     "mean ± half the range", "Gaussian filters (the 32,000-filter run's curve)"], rows)


PAPER_CONV, PAPER_L2 = 0.17, 0.15     # Section 5's random conv kernel: interpolant, l2
TARGET_CONV, TARGET_L2 = 0.19, 0.17   # the project's targets at 32,000 filters


def _paper_size_patch_runs(R):
    """[(filter seed, summary)] of the patch-filter runs at the paper's 32,000 filters."""
    out = []
    for seed, rels in enumerate(KERNEL_PATCHES):
        try:
            out.append((seed, R.json(rels[1][0])))
        except MissingRecord:
            continue
    return out


def kernel_patch_prose(R):
    """docs/theory.md's sentence on the patch filters against the paper, from the records."""
    big = _paper_size_patch_runs(R)
    pending = [str(i) for i in range(len(KERNEL_PATCHES)) if i not in [seed for seed, _ in big]]
    if not big:
        return ("The paper's 17% (interpolant) and 15% (l2) are not reached at "
                + " and ".join(sorted({_n(s["conv_filters"]) for _, s in _patch_runs(R)})) + " filters; the "
                "32,000-patch-filter runs (in the run plan of docs/results.md, about 2 h 45 min each "
                "from block 0 with the machine to itself) are not run yet.")
    seeds = " and ".join(str(seed) for seed, _ in big)
    interp = [s["results"]["true"]["test_error"] for _, s in big]
    ridge = [s["results"]["true_ridge"]["test_error"] for _, s in big]
    fmt = lambda v: " and ".join(f"{pct(e, 2)}%" for e in v)  # noqa: E731
    verdict = lambda v, bar: ("within" if max(v) <= bar else "above")  # noqa: E731
    text = (f"At the paper's 32,000 filters (filter seed{'s' if len(big) > 1 else ''} {seeds}; "
            f"n = 50,000 / 10,000) patch filters give **{fmt(interp)}** test error interpolating and "
            f"**{fmt(ridge)}** with the validated ridge, against the paper's {pct(PAPER_CONV, 0)}% and "
            f"{pct(PAPER_L2, 0)}%: the interpolant is {verdict(interp, TARGET_CONV)} the project's target "
            f"of at most {pct(TARGET_CONV, 0)}%, the ridge row {verdict(ridge, TARGET_L2)} its "
            f"{pct(TARGET_L2, 0)}%; "
            f"random labels are fit exactly and at chance on the test set "
            f"({', '.join(pct(s['results']['random']['test_error']) + '%' for _, s in big)}).")
    if pending:
        text += (f"  Filter seed {' and '.join(pending)} at 32,000 is in the run plan "
                 "(docs/results.md), so the spread at 32,000 is not measured yet.")
    return text


def readme_kernel_patches32000(R):
    """The README's sentence on the patch filters at the paper's 32,000, from the records."""
    big = _paper_size_patch_runs(R)
    if not big:
        return ("The 32,000-patch-filter runs (the paper's filter count) are in the run plan\n"
                "([docs/results.md](docs/results.md)).")
    e = lambda key: " and ".join(f"{pct(s['results'][key]['test_error'], 2)}%" for _, s in big)  # noqa: E731
    return (f"With the paper's 32,000 patch filters (filter seed{'s' if len(big) > 1 else ''} "
            f"{' and '.join(str(i) for i, _ in big)}) the test error is {e('true')} interpolating\n"
            f"and {e('true_ridge')} with the validated ridge (paper {pct(PAPER_CONV, 0)}% and {pct(PAPER_L2, 0)}%).")


KERNEL_DESIGN = "kernel/design_n4000.json"
KERNEL_RIDGE_SIZES = "kernel/ridge_sizes_n4000.json"


def kernel_design_table(R):
    """The random conv design revalidated with patch filters on held-out training images."""
    s = R.json(KERNEL_DESIGN)
    err = lambda v: "—" if v is None else f"{pct(v, 2)}%"  # noqa: E731
    rows = [[r["name"], r["conv_filters_from"], f"{r['conv_kernel']}", f"{r['conv_pool']} x {r['conv_pool']}",
             f"{r['conv_threshold']:g}", "two" if r["conv_two_sided"] else "one", _n(r["dim"]),
             f"{err(r['heldout_error'])} ({r['bandwidth_factor']:g} x median)",
             f"{err(r['heldout_error_ridge'])} (ridge {r['ridge']:g})", err(r["heldout_error_linear"]),
             "—" if r["linear_ridge"] is None else
             f"{err(r['heldout_error_linear_ridge'])} ({r['linear_ridge']:g} x mean diagonal)"]
            for r in s["rows"]]
    return md_table(["row", "filters", "patch", "pooling", "threshold", "sides", "features",
                     "Gaussian kernel, interpolant", "Gaussian kernel, ridge", "linear, interpolant",
                     "linear, ridge"], rows)


def kernel_ridge_sizes_table(R):
    """A ridge chosen on a smaller fit, applied at n as chosen and times n / m."""
    s = R.json(KERNEL_RIDGE_SIZES)
    rows = [[_n(r["fit_n"]), f"{r['factor']:g} x median", f"{r['ridge']:.3g}", f"{pct(r['val_error'], 2)}%",
             f"{pct(r['heldout_error_as_chosen'], 2)}%",
             f"{pct(r['heldout_error_scaled'], 2)}% (ridge {r['scaled_ridge']:.3g})"] for r in s["rows"]]
    return md_table(["fit images m", "sigma", "ridge chosen", "validation error",
                     f"held-out error at n = {_n(s['n'])}, ridge as chosen",
                     "held-out error, ridge x n / m"], rows)


def kernel_ridge_n_table(R):
    """The patch-filter runs at the paper's size rerun from their kept state with
    --ridge_scaling=n (record <its name>_ridge_n.json): the ridge row with the ridge as chosen on
    the validation fit and times n / fit_n, the same distances and bandwidth; runs without the
    scaled rerun are left out."""
    rows, said = [], []
    for seed, rels in KERNEL_PATCHES:
        rel = rels[0]
        rel_n = rel.replace(".json", "_ridge_n.json")
        try:
            s, t = R.json(rel), R.json(rel_n)
        except MissingRecord:
            continue
        name = f"patch filters, {_n(s['conv_filters'])}, {seed}"
        a, b = s["results"]["true_ridge"], t["results"]["true_ridge"]
        rows.append([name, f"{_n(s['n'])} / {_n(s['test_n'])}", _n(s["validation"]["fit_n"]),
                     f"{pct(a['test_error'], 2)}% (ridge {a['ridge']:g}, train error {pct(a['train_error'], 2)}%)",
                     f"{pct(b['test_error'], 2)}% (ridge {b['ridge']:g}, train error {pct(b['train_error'], 2)}%)",
                     f"`{rel_n}`"])
        diff = 100 * (b["test_error"] - a["test_error"])
        se = 100 * math.sqrt(a["test_error"] * (1 - a["test_error"]) / s["test_n"])
        said.append(f"{name[0].upper()}{name[1:]}: the scaled ridge is {abs(diff):.2f} points "
                    f"{'worse' if diff > 0 else 'better'} (one test error's standard error is about {se:.1f} points)")
    if not rows:
        return ("No full-scale run has been rerun with `--ridge_scaling=n` yet; the reruns are in "
                "the run plan (docs/results.md).")
    return md_table(["run", "n / test images", "validation fit images", "ridge as chosen: test error",
                     "ridge x n / fit_n: test error", "record (docs/results/)"], rows) + "\n\n" + "; ".join(said) + "."


KERNEL_COMPARE = (("patches", "kernel/compare_n10000_patches.json"),
                  ("gaussian", "kernel/compare_n10000_gaussian.json"))


def kernel_compare_table(R):
    """Patch against Gaussian filters, the same settings otherwise, on the test images."""
    rows = []
    for name, rel in KERNEL_COMPARE:
        s = R.json(rel)
        res, v = s["results"], s["validation"]
        rows.append([name, f"{_n(s['n'])} / {_n(s['test_n'])}", _n(s["conv_filters"]),
                     f"{pct(res['true']['test_error'], 2)}% ({s['bandwidth_factor']:g} x median, validation "
                     f"{pct(v['interpolation']['val_error'], 2)}%)",
                     f"{pct(res['true_ridge']['test_error'], 2)}% (ridge {res['true_ridge']['ridge']:g}, validation "
                     f"{pct(v['ridge']['val_error'], 2)}%)", f"`{rel}`"])
    return md_table(["filters", "n / test images", "filter count", "interpolant: test error",
                     "validated ridge: test error", "record (docs/results/)"], rows)


def dynamics_example(R):
    """The sentence of docs/experiments.md on the dynamics example, from its records."""
    from rethinkgen_tf import dynamics
    (run,) = R.runs("dynamics")
    a = dynamics.load(run.dir)
    g = dynamics.group_accuracy(a)
    noisy = a["corrupted"].astype(bool)
    first = a["first_fit_epoch"]
    med = [int(np.median(first[m & (first >= 0)])) for m in (~noisy, noisy)]
    orig = np.asarray(g["noisy_orig"])
    below = int(g["epochs"][np.argmax(orig < 0.01)]) if (orig < 0.01).any() else None
    last_fit = int(first.max()) if (first >= 0).all() else None
    t, d = run.config["train"], run.config["data"]
    return (f"MLP 1x512 on {_n(run.result['num_train'])} class-balanced CIFAR-10 training "
            f"images with p = {d['corrupt']:g} ({_n(int(noisy.sum()))} labels actually "
            f"changed), lr {t['learning_rate']:g} x{t['lr_decay']:g} per epoch, "
            f"{run.result['epochs']} epochs, `--record_examples=full` (record: "
            f"`docs/results/dynamics/{run.dir.name}`).  Clean examples are fit first "
            f"(median first-fit epoch {med[0]}, against {med[1]} for the corrupted ones); the "
            f"corrupted examples' accuracy on their original labels starts at "
            f"{pct(orig[0], 0)}% and falls below 1% "
            + (f"by epoch {below}" if below else "never") +
            " as the network memorizes their new labels; "
            + (f"every example is first fit by epoch {last_fit}" if last_fit else
               f"{_n(int((first < 0).sum()))} examples are never fit") +
            ", and the corrupted ones sit at lower confidence and higher variability on the "
            f"data map.  Test accuracy at epoch {run.result['epochs']}: "
            f"{pct(run.final['test_acc'])}%.")


def small_example(R):
    (run,) = R.runs("examples")
    return (f"the random labels are fit to 100% at epoch {run.result['overfit_epoch']} while "
            f"test accuracy stays at {pct(run.final['test_acc'])}%")


def _linear(R):
    return sorted(R.runs("linear_control"), key=lambda r: r.result["num_train"])


def linear_rule(R):
    runs = _linear(R)
    lo, hi = runs[0], runs[-1]
    return (f"{pct(lo.final['train_eval_acc'])}% of random labels at n = "
            f"{_n(lo.result['num_train'])} and {pct(hi.final['train_eval_acc'])}% at n = "
            f"{_n(hi.result['num_train'])}.")


def linear_control_prose(R):
    runs = _linear(R)
    below = [r for r in runs if r.result["num_train"] < 2352]
    above = [r for r in runs if r.result["num_train"] > 2352]
    out = []
    for r in runs:
        rows = r.rows
        if 2352 / 2 < r.result["num_train"] < 2 * 2352 and len(rows) >= 25:
            out.append(f"At n = {_n(r.result['num_train'])}, near the input dimension, the fit "
                       f"rises from {pct(rows[24]['train_eval_acc'])}% at epoch 25 to "
                       f"{pct(r.final['train_eval_acc'])}% at epoch {r.result['epochs']}, "
                       "slowed by the decaying learning rate.")
    if below and above:
        out.insert(0, f"Below the input dimension the linear model fits "
                      f"{pct(min(r.final['train_eval_acc'] for r in below))}% or more of "
                      f"random labels; at {_n(above[0].result['num_train'])} and above, at most "
                      f"{pct(max(r.final['train_eval_acc'] for r in above))}%, while test "
                      "accuracy stays at chance throughout.")
    return " ".join(out)


def figure1_cpu_figure(R):
    runs = [r for r in R.runs("figure1_cpu") if r.tags()["randomize"] == "none"]
    n = "/".join(sorted({_n(r.result["num_train"]) for r in runs}))
    groups = {}
    for r in runs:
        groups.setdefault((r.tags()["model"], r.tags()["corrupt"]), {})[r.tags()["seed"]] = r
    models = " and ".join(dict.fromkeys(_model_name(r.tags()["model"]) for r in runs))
    return (f"![Figure 1 (b, c) at the cpu scale, {models}, n = {n}, "
            f"{_seeds(groups.values())}](figures/figure1_cpu_mlp_linear_n10000.png)")


def figure1_paper_mlp(R):
    table = figure1_table(R, "figure1_paper", ["mlp_1x512"])
    seeds = sorted({r.tags()["seed"] for r in R.runs("figure1_paper")
                    if r.tags()["model"] == "mlp_1x512"})  # figure1_table: at least one
    return (f"![Figure 1, MLP 1x512, n = 50,000, {len(seeds)} seeds]"
            f"(figures/figure1_mlp_1x512_n50000.png)\n\n{table}")


def results_size(R):
    # hidden files (a half-copied record's temporary directory, an editor's) are not records
    files = [f for f in R.root.rglob("*") if f.is_file()
             and not any(part.startswith(".") for part in f.relative_to(R.root).parts)]
    return (f"{sum(f.stat().st_size for f in files) / 2**20:.1f} MiB in {len(files)} files "
            "(`du -sh docs/results` rounds up to whole blocks).")


def readme_figure1(R):
    """The README's Figure 1 summary: MLP 1x512 at n = 50,000 and the cpu-scale MLP vs
    linear control, from whichever records exist."""
    out = []
    try:
        runs = [r for r in R.runs("figure1_paper") if r.tags()["model"] == "mlp_1x512"
                and r.tags()["randomize"] == "none"]
    except MissingRecord:
        runs = []
    if runs:
        by = {(r.tags()["corrupt"], r.tags()["seed"]): r for r in runs}
        seeds = sorted({s for _, s in by})
        slow = [by[(1.0, s)].result["overfit_step"] / by[(0.0, s)].result["overfit_step"]
                for s in seeds if (1.0, s) in by and (0.0, s) in by]
        err = {p: 100 * np.mean([1 - by[(p, s)].final["test_acc"] for s in seeds
                                 if (p, s) in by]) for p in (0.0, 1.0)}
        thr = runs[0].config["train"].get("overfit_threshold", 1.0)
        out.append(f"Figure 1 for MLP 1x512 on all 50,000 CIFAR-10 images, {len(seeds)} seeds "
                   f"(fit = {100 * thr:g}% re-evaluated training accuracy): random labels take "
                   f"{np.mean(slow):.2f}x the steps of true labels (paper: 1.5-4x, our reading "
                   f"of its figure), and test error rises from {err[0.0]:.1f}% (paper 49.49%) to "
                   f"{err[1.0]:.1f}% at p = 1 (paper about 90%).\n\n![Figure 1, MLP 1x512, "
                   f"n = 50,000, {len(seeds)} seeds](docs/figures/figure1_mlp_1x512_n50000.png)")
    try:
        cpu = R.runs("figure1_cpu")
    except MissingRecord:
        cpu = []
    lin = [r for r in cpu if r.tags()["model"] == "linear" and r.tags()["corrupt"] == 1.0]
    mlp = [r for r in cpu if r.tags()["model"] == "mlp_1x512" and r.tags()["corrupt"] == 1.0]
    if lin and mlp:
        n = lin[0].result["num_train"]
        out.append(f"At the cpu scale ({_n(n)} class-balanced images; p = 1, "
                   f"{_seeds([{r.tags()['seed']: r for r in lin}])}) the "
                   f"linear control fits at most "
                   f"{pct(max(r.final['train_eval_acc'] for r in lin))}% of random labels "
                   f"while MLP 1x512 fits "
                   f"{pct(min(r.final['train_eval_acc'] for r in mlp))}% of them "
                   "(docs/experiments.md has the figure and Table 1's rows).")
    if not out:
        raise MissingRecord("no Figure 1 records")
    return "\n\n".join(out)


# name -> (doc, function of Records); the text between <!-- report:name --> markers
# ------------------------------------------------------------------ the convnet run plan
def precision_table(R):
    """docs/runplan.md: the same small runs in float32 and bf16 (--precision), final
    train and test accuracy side by side, and what the change of precision moves them
    against what a change of seed moves them."""
    runs = R.runs("precision")
    key = lambda r: (r.config["train"]["model"], r.result["num_train"])  # noqa: E731
    rows, spread = [], []
    for (model, n) in sorted({key(r) for r in runs}):
        mine = {(r.config["train"]["seed"], r.config["train"].get("precision", "float32")): r
                for r in runs if key(r) == (model, n)}
        for seed in sorted({s for s, _ in mine}):
            cells = []
            for prec in ("float32", "bf16"):
                r = mine.get((seed, prec))
                cells += [f"{pct(r.final['train_eval_acc'], 2)}%", f"{pct(r.final['test_acc'], 2)}%",
                          r.result.get("overfit_epoch") or "—"] if r else ["not run yet"] * 3
            rows.append([_model_name(model), _n(n), seed, *cells])
        test = {k: v.final["test_acc"] for k, v in mine.items()}
        by_prec = [abs(test[(s, "bf16")] - test[(s, "float32")]) for s in {s for s, _ in mine}
                   if (s, "bf16") in test and (s, "float32") in test]
        by_seed = [abs(test[(0, p)] - test[(1, p)]) for p in ("float32", "bf16")
                   if (0, p) in test and (1, p) in test]
        if by_prec:
            spread.append(f"{_model_name(model)} at n = {_n(n)}: bf16 moves the test accuracy "
                          f"by {', '.join(pct(d, 2) for d in by_prec)} points; "
                          + (f"the seed moves it by {', '.join(pct(d, 2) for d in by_seed)}."
                             if by_seed else "the second seed is not run yet."))
    head = ["model", "n", "seed", "float32 train", "float32 test", "float32 fit epoch",
            "bf16 train", "bf16 test", "bf16 fit epoch"]
    test_n = "/".join(sorted({_n(r.result["num_test"]) for r in runs}))
    return (md_table(head, rows) + f"\n\nTrain: the re-evaluated training set; test: {test_n} "
            "test images; fit epoch: the first epoch at 100% training accuracy.  "
            + " ".join(spread))


def _by_p(runs, seed=0):
    """({p: run} of one model's Figure 1 (b, c) records at `seed`, the shared run or None):
    without a p = 1 record, (a)'s random-labels run stands for p = 1, since corrupting every
    label draws them as random labels do (the same training labels, bit for bit)."""
    at = {}
    for r in runs:
        t = r.tags()
        if t["seed"] == seed and t["randomize"] == "none":
            at.setdefault(t["corrupt"], r)
    shared = None
    if 1.0 not in at:
        shared = next((r for r in runs if r.tags()["seed"] == seed
                       and r.tags()["randomize"] == "labels"), None)
        if shared is not None:
            at[1.0] = shared
    return at, shared


def _finished_steps(at):
    """[(p, steps to fit)] of a grid's points that fit, in order of p, and the neighbouring
    pairs (p, steps, next p, its steps) where the larger p fits in fewer steps."""
    steps = [(p, at[p].result["overfit_step"]) for p in sorted(at) if at[p].result.get("overfit_step")]
    return steps, [(a, sa, b, sb) for (a, sa), (b, sb) in zip(steps, steps[1:]) if sb < sa]


def _steps_order(at):
    """The sentence on whether the steps to fit grow with p over a grid's finished points
    (three or more), naming each neighbouring pair where they do not; '' with fewer."""
    steps, drops = _finished_steps(at)
    if len(steps) < 3:
        return ""
    points = ", ".join(f"{p:g}" for p, _ in steps)
    if not drops:
        return (f"Over the finished points (p = {points}) the steps to fit grow with p at every step, "
                "as in the paper's Figure 1 (b).")
    return ("The steps to fit do not grow with p at every step, as they do in the paper's Figure 1 (b): "
            + "; ".join(f"p = {b:g} fits in fewer steps ({sb:,}) than p = {a:g} ({sa:,})" for a, sa, b, sb in drops)
            + f" (finished points p = {points}; one seed: how far the steps to fit move between seeds "
            "is not measured here).")


def _figure1_bc(runs, model, figure, extra=""):
    """A Figure 1 (b, c) grid's table, seed 0: every p of the grid, the ones without a
    record marked as not run yet; its settings from the records' configs."""
    from rethinkgen_tf.grids import CORRUPTIONS
    from rethinkgen_tf.plots import PAPER_SLOWDOWN_AT_1, PAPER_TEST_ERROR_AT_0
    at, shared = _by_p(runs)
    base = at.get(0.0)
    rows = []
    for p in CORRUPTIONS:
        r = at.get(p)
        paper_err = (f"{100 * PAPER_TEST_ERROR_AT_0[model]:.2f} (Table 1)" if p == 0 else
                     "about 90" if p == 1 else "not stated")
        paper_slow = f"{PAPER_SLOWDOWN_AT_1[0]:g}-{PAPER_SLOWDOWN_AT_1[1]:g}x (our reading)" \
            if p == 1 else ("1" if p == 0 else "")
        if r is None:
            rows.append([f"{p:g}", "not run yet", "", "", "", paper_slow, paper_err])
            continue
        step = r.result.get("overfit_step")
        slow = f"{step / base.result['overfit_step']:.2f}x" if step and base is not None \
            and base.result.get("overfit_step") else ("never fit" if not step else "—")
        rows.append([f"{p:g}" + (" (the random-labels run of (a))" if r is shared else ""),
                     r.result.get("overfit_epoch") or "never fit", step or "—",
                     f"{pct(r.final['train_eval_acc'], 3)}%", slow,
                     paper_slow, f"{pct(1 - r.final['test_acc'], 2)} (ours) / {paper_err}"])
    (n,) = {r.result["num_train"] for r in at.values()}
    t = (base or next(iter(at.values()))).config["train"]
    head = ["p", "epochs to fit", "steps to fit", "train acc at the stop", "time to fit / p = 0",
            "paper: slowdown", "test error %: ours / paper"]
    from rethinkgen_tf.plots import MODEL_NAMES
    name = MODEL_NAMES.get(model, model)
    return (f"{name}, n = {_n(n)}, seed 0, {t.get('precision', 'float32')}, fit = "
            f"{100 * t.get('overfit_threshold', 1.0):g}% of the training set re-evaluated, "
            f"at most {t['epochs']} epochs (learning rate {t['learning_rate']:g} x "
            f"{t['lr_decay']:.4g} per epoch):\n\n" + md_table(head, rows)
            + ("\n\nAt p = 1 every label is drawn as random labels draw them, so that row is "
               "the random-labels run of Figure 1 (a): the same training labels, bit for bit (the "
               "two configurations' data fingerprints agree)." if shared is not None else "")
            + (f"\n\n{order}" if (order := _steps_order(at)) else "")
            + (f"\n\n{extra}" if extra else "")
            + f"\n\n![Figure 1 (b, c), {name}, n = {_n(n)}, seed 0, the finished points]"
            f"(figures/{figure}.png)")


def alexnet_figure1_paper(R):
    """docs/runplan.md: grid 1, Figure 1 (b, c) for AlexNet at n = 50,000."""
    runs = [r for r in R.runs("figure1_paper") if r.tags()["model"] == "alexnet"
            and r.tags()["randomize"] == "none"]
    if not runs:
        raise MissingRecord("no AlexNet runs in docs/results/figure1_paper")
    return _figure1_bc(runs, "alexnet", "figure1_alexnet_n50000")


def inception_figure1bc_n10000(R):
    """docs/runplan.md: grid 4, Figure 1 (b, c) for small Inception at n = 10,000."""
    runs = [r for r in R.runs("figure1_n10000") if r.tags()["model"] == "inception"
            and r.tags()["randomize"] in ("none", "labels")]
    if not runs:
        raise MissingRecord("no Inception runs in docs/results/figure1_n10000")
    return _figure1_bc(runs, "inception", "figure1_inception_n10000",
                       extra=_inception_slowdown_by_n(R, runs))


def _slowdown_at_1(runs):
    """steps to fit at p = 1 (or random labels) / at p = 0, seed 0; None without both."""
    at, _ = _by_p(runs)
    one, zero = at.get(1.0), at.get(0.0)
    if one is None or zero is None or not one.result.get("overfit_step") \
            or not zero.result.get("overfit_step"):
        return None
    return one.result["overfit_step"] / zero.result["overfit_step"], zero.result["num_train"]


def _inception_slowdown_by_n(R, runs):
    """The sentence on small Inception's slowdown at p = 1 at each n with records."""
    from rethinkgen_tf.plots import PAPER_SLOWDOWN_AT_1
    try:
        small = [r for r in R.runs("figure1_n1000") if r.tags()["model"] == "inception"]
    except MissingRecord:
        small = []
    found = [x for x in (_slowdown_at_1(small), _slowdown_at_1(runs)) if x is not None]
    if len(found) < 2:
        return ""
    listed = " and ".join(f"{ratio:.2f}x at n = {_n(n)}" for ratio, n in found)
    return (f"The slowdown at p = 1 grows with n: {listed} (seed 0, bf16; the n = 1,000 points are "
            "the cpu scale's, tested on 2,000 images, in docs/results/figure1_n1000), against the "
            f"paper's {PAPER_SLOWDOWN_AT_1[0]:g}-{PAPER_SLOWDOWN_AT_1[1]:g}x at 50,000 (our reading of its "
            "figure).  At 1,000 images, fewer than 4 x the 2,352 input dimensions, random labels fit "
            "as fast as true labels; below that size even the linear control fits random labels "
            "(docs/experiments.md, the cpu scale's sizes).")


# Figure 1 (a) as the paper describes it (it gives curves, not numbers)
PAPER_FIGURE1A = {"none": "fits, ~0 loss", "labels": "fits, the last to start converging",
                  "shuffled_pixels": "fits", "random_pixels": "fits, before random labels",
                  "gaussian": "fits, before random labels"}


def inception_figure1a_n10000(R):
    """docs/runplan.md: grid 3, Figure 1 (a) for small Inception at n = 10,000: every
    randomization, the ones without a record marked as not run yet."""
    from rethinkgen_tf.grids import FIG1_RANDOMIZATIONS
    from rethinkgen_tf.plots import LABELS
    runs = [r for r in R.runs("figure1_n10000") if r.tags()["model"] == "inception"
            and r.tags()["seed"] == 0 and r.tags()["corrupt"] == 0]
    if not runs:
        raise MissingRecord("no Inception runs in docs/results/figure1_n10000")
    at = {r.tags()["randomize"]: r for r in runs}
    base = at.get("none")
    rows = []
    for name in FIG1_RANDOMIZATIONS:
        r = at.get(name)
        if r is None:
            rows.append([LABELS[name], "not run yet", "", "", "", "", PAPER_FIGURE1A[name]])
            continue
        step = r.result.get("overfit_step")
        rel = f"{step / base.result['overfit_step']:.2f}x" if step and base is not None \
            and base.result.get("overfit_step") else ("never fit" if not step else "—")
        rows.append([LABELS[name], r.result.get("overfit_epoch") or "never fit", step or "—", rel,
                     f"{r.final['train_loss']:.4f}", f"{pct(r.final['test_acc'], 2)}%",
                     PAPER_FIGURE1A[name]])
    config = (base or runs[0]).result["config"]
    t = config["train"]
    (n,) = {r.result["num_train"] for r in runs}
    head = ["training data", "epochs to fit", "steps to fit", "steps / true labels",
            "train loss at the stop", "test accuracy", "paper, Figure 1 (a)"]
    return (f"Small Inception, n = {_n(n)}, seed 0, {t['precision']}, fit = 100% of the "
            f"training set re-evaluated, batch {config['data']['batch_size']}, learning rate {t['learning_rate']:g} x "
            f"{t['lr_decay']:.4f} per epoch, at most {t['epochs']} epochs:\n\n"
            + md_table(head, rows)
            + f"\n\n![Figure 1 at n = {_n(n)}, small Inception, seed 0, the finished points]"
            "(figures/figure1_inception_n10000.png)")


LAST_EPOCHS = 10  # Figure 2b: the final accuracy also as the mean of the last epochs (less noisy)


def _last_epochs(r):
    """(mean, sd) of the test accuracy over the run's last LAST_EPOCHS tested epochs."""
    tail = [x["test_acc"] for x in results.tested(r.rows)][-LAST_EPOCHS:]
    return float(np.mean(tail)), float(np.std(tail))


def _implicit_numbers(R):
    """{model: numbers} of the finished Figure 2b records at seed 0 (diverged runs: their
    run only): final, last (mean, sd of the last epochs), best and best_epoch test accuracy."""
    out = {}
    for r in R.runs("implicit_n10000"):
        if r.tags()["seed"] != 0:
            continue
        if results.diverged(r.result):
            out[r.tags()["model"]] = {"run": r}
            continue
        top = max(results.tested(r.rows), key=lambda x: x["test_acc"])
        out[r.tags()["model"]] = {"run": r, "final": r.final["test_acc"], "last": _last_epochs(r),
                                  "best": top["test_acc"], "best_epoch": top["epoch"]}
    return out


def implicit_n10000(R):
    """docs/runplan.md: grid 5, Figure 2b for small Inception at n = 10,000: with and without
    batch norm, no other regularizer; the final and the best test accuracy (what early
    stopping could give), beside Table 1's no-regularizer rows for the two models."""
    from rethinkgen_tf.grids import TABLE1
    from rethinkgen_tf.plots import MODEL_NAMES
    nums = _implicit_numbers(R)
    rows = []
    for model in ("inception", "inception_nobn"):
        name, paper = MODEL_NAMES.get(model, model), f"{TABLE1[(model, False, False, False)][1]:.2f}%"
        x = nums.get(model)
        if x is None:
            rows.append([name, "not run yet", "", "", "", "", "", paper])
        elif "final" not in x:
            rows.append([name, f"diverged at epoch {x['run'].result.get('diverged_epoch', '?')}",
                         "", "", "", "", "", paper])
        else:
            rows.append([name, len(x["run"].rows), f"{pct(x['run'].final['train_eval_acc'], 2)}%",
                         f"{pct(x['final'], 2)}%", f"{pct(x['last'][0], 2)}% ± {pct(x['last'][1], 2)}",
                         f"{pct(x['best'], 2)}% (epoch {x['best_epoch']})",
                         pct(x["best"] - x["final"], 2), paper])
    done = {m: x for m, x in nums.items() if "final" in x}
    if not done:
        raise MissingRecord("no finished runs in docs/results/implicit_n10000")
    some = next(iter(nums.values()))["run"]
    t, n = some.config["train"], some.result["num_train"]
    head = ["model", "epochs", "train acc (final)", "test acc (final)",
            f"test acc, last {LAST_EPOCHS} epochs (mean ± sd)", "best test acc (epoch)",
            "early stopping would gain (points, over the final)",
            "paper: test acc (Table 1, no regularizer)"]
    text = (f"Small Inception with and without batch norm, n = {_n(n)}, seed 0, "
            f"{t.get('precision', 'float32')}, no weight decay, no augmentation, "
            f"{t['epochs']} epochs (learning rate {t['learning_rate']:g} x {t['lr_decay']:.4g} "
            f"per epoch), {_n(some.result['num_test'])} test images evaluated every epoch:\n\n"
            + md_table(head, rows))
    if len(done) == 2:
        bn, nobn = done["inception"], done["inception_nobn"]
        text += (f"\n\nBatch norm changes the final test accuracy by "
                 f"{100 * (bn['final'] - nobn['final']):+.2f} points, and the mean of the last "
                 f"{LAST_EPOCHS} epochs by {100 * (bn['last'][0] - nobn['last'][0]):+.2f} (paper: it "
                 "adds 3-4 points; Table 1: 85.75% against 82.00% on all 50,000 images).  Early "
                 f"stopping at the best epoch would gain {pct(bn['best'] - bn['final'], 2)}"
                 f" points over the final epoch with batch norm and "
                 f"{pct(nobn['best'] - nobn['final'], 2)} without, and "
                 f"{pct(bn['best'] - bn['last'][0], 2)} and "
                 f"{pct(nobn['best'] - nobn['last'][0], 2)} over the last "
                 f"{LAST_EPOCHS} epochs' mean (paper: no gain on CIFAR-10); the best epoch is chosen "
                 "here on the test set itself, so these are upper bounds on what early stopping "
                 "could give.")
    return (text + f"\n\n![Figure 2b, small Inception with and without batch norm, "
            f"n = {_n(n)}, seed 0](figures/figure2b_inception_n10000.png)")


def table1_paper_rows(R):
    """docs/runplan.md: Table 1's rows at n = 50,000 (grid 2, and grid 6 as it lands)."""
    return table1_table(R, "table1_paper")


def readme_convnets(R):
    """The README's line on the convnet grids: the finished ones' headline numbers."""
    from rethinkgen_tf.plots import PAPER_SLOWDOWN_AT_1, PAPER_TEST_ERROR_AT_0, TABLE1
    out = []
    alex = {r.tags()["corrupt"]: r for r in R.runs("figure1_paper")
            if r.tags()["model"] == "alexnet" and r.tags()["seed"] == 0}
    if 0.0 in alex and 1.0 in alex:
        a0, a1 = alex[0.0], alex[1.0]
        out.append(f"AlexNet on all {_n(a0.result['num_train'])} images (seed 0) fits random labels "
                   f"in {a1.result['overfit_step'] / a0.result['overfit_step']:.2f}x the steps of "
                   f"true labels (paper {PAPER_SLOWDOWN_AT_1[0]:g}-{PAPER_SLOWDOWN_AT_1[1]:g}x, our "
                   f"reading of its figure) with {pct(1 - a1.final['test_acc'], 2)}% test error "
                   f"(paper about 90%); {pct(1 - a0.final['test_acc'], 2)}% on true labels (paper "
                   f"{100 * PAPER_TEST_ERROR_AT_0['alexnet']:.2f}%).")
    mlp3 = {(r.tags()["wd"], r.tags()["random_labels"]): r for r in R.runs("table1_paper")
            if r.tags()["model"] == "mlp_3x512" and r.tags()["seed"] == 0}
    if len(mlp3) == 3:
        rows = ((True, False), (False, False), (False, True))
        acc = " / ".join(pct(mlp3[k].final["test_acc"], 2) for k in rows)
        paper = " / ".join(f"{TABLE1[('mlp_3x512', False, *k)][1]:.2f}" for k in rows)
        out.append(f"MLP 3x512 on all {_n(mlp3[(False, False)].result['num_train'])} images "
                   f"(seed 0) fits all three of Table 1's rows with test accuracy {acc}% "
                   f"(weight decay / none / random labels; paper {paper}%).")
    inc = {r.tags()["randomize"]: r for r in R.runs("figure1_n10000")
           if r.tags()["model"] == "inception" and r.tags()["corrupt"] == 0
           and r.tags()["seed"] == 0}
    names = {"labels": "random labels", "shuffled_pixels": "shuffled pixels",
             "random_pixels": "random pixels", "gaussian": "Gaussian inputs"}
    if "none" in inc and "labels" in inc:
        i0 = inc["none"]
        ratio = {k: inc[k].result["overfit_step"] / i0.result["overfit_step"] for k in names if k in inc}
        if len(ratio) == len(names):  # Figure 1 (a) complete: every input, fastest first
            listed = ", ".join(f"{names[k]} {ratio[k]:.2f}x" for k in sorted(ratio, key=ratio.get))
            out.append(f"Small Inception on {_n(i0.result['num_train'])} images (seed 0) fits every "
                       f"input of Figure 1 (a), in steps relative to true labels: {listed} (the "
                       "paper has Gaussian inputs and random pixels before random labels; "
                       "docs/runplan.md).")
        else:
            out.append(f"Small Inception on {_n(i0.result['num_train'])} images (seed 0) fits "
                       f"random labels in {ratio['labels']:.2f}x the steps of true labels.")
    from rethinkgen_tf.grids import CORRUPTIONS
    at, _ = _by_p([r for r in R.runs("figure1_n10000") if r.tags()["model"] == "inception"])
    steps, drops = _finished_steps(at)
    if [p for p, _ in steps] == list(CORRUPTIONS):  # grid 4 complete: every p fit
        slow = [x / steps[0][1] for _, x in steps]
        grows = not drops
        out.append(f"Across label corruption p = {', '.join(f'{p:g}' for p in CORRUPTIONS)} it fits every "
                   f"p in {' / '.join(f'{x:.2f}' for x in slow)}x the steps of p = 0 "
                   f"({'growing with p' if grows else 'not growing with p at every step'}, one seed; "
                   f"the paper's grow), with test error from {pct(1 - at[0.0].final['test_acc'], 2)}% to "
                   f"{pct(1 - at[1.0].final['test_acc'], 2)}%.")
    try:
        imp = {m: x for m, x in _implicit_numbers(R).items() if "final" in x}
    except MissingRecord:
        imp = {}
    if "inception" in imp and "inception_nobn" in imp:
        bn, nobn = imp["inception"], imp["inception_nobn"]
        out.append(f"Figure 2b at {_n(bn['run'].result['num_train'])} images (seed 0): batch norm "
                   f"changes small Inception's final test accuracy by "
                   f"{100 * (bn['final'] - nobn['final']):+.2f} points "
                   f"({100 * (bn['last'][0] - nobn['last'][0]):+.2f} over the last "
                   f"{LAST_EPOCHS} epochs' mean; paper: +3 to 4), and stopping at the best test "
                   f"epoch would gain {pct(bn['best'] - bn['final'], 2)} and "
                   f"{pct(nobn['best'] - nobn['final'], 2)} points over the "
                   "final one with and without it (paper: no gain).")
    if not out:
        raise MissingRecord("no finished convnet grid points")
    pictures = []
    if "none" in inc:
        pictures.append(f"![Figure 1, small Inception, n = {_n(inc['none'].result['num_train'])}, "
                        "seed 0](docs/figures/figure1_inception_n10000.png)")
    if "inception" in imp and "inception_nobn" in imp:
        pictures.append(f"![Figure 2b, small Inception with and without batch norm, n = "
                        f"{_n(imp['inception']['run'].result['num_train'])}, seed 0]"
                        "(docs/figures/figure2b_inception_n10000.png)")
    return "\n\n".join([" ".join(out), *pictures])


def runplan_status(R):
    """docs/runplan.md: how many points of each convnet grid have a committed record."""
    from rethinkgen_tf import grids

    def done(experiment, pred):
        try:
            return [r for r in R.runs(experiment) if pred(r)]
        except MissingRecord:
            return []

    alex = done("figure1_paper", lambda r: r.tags()["model"] == "alexnet")
    mlp3 = done("table1_paper", lambda r: r.tags()["model"] == "mlp_3x512")
    rows = [["1", f"{len(alex)} of {len(grids.CORRUPTIONS)}: p = "
             + (", ".join(f"{r.tags()['corrupt']:g}" for r in alex) or "none"),
             "the others not run yet" if len(alex) < len(grids.CORRUPTIONS) else "done"],
            ["2", f"{len(mlp3)} of 3", "the others not run yet" if len(mlp3) < 3 else "done"]]
    inc = done("figure1_n10000", lambda r: r.tags()["model"] == "inception")
    a = [r for r in inc if r.tags()["randomize"] != "none" or r.tags()["corrupt"] == 0]
    b, _ = _by_p(inc)
    from rethinkgen_tf.plots import LABELS
    rows.append(["3", f"{len(a)} of {len(grids.FIG1_RANDOMIZATIONS)}: "
                 + (", ".join(LABELS[r.tags()["randomize"]] for r in a)
                    or "none"),
                 "the others not run yet" if len(a) < len(grids.FIG1_RANDOMIZATIONS) else "done"])
    rows.append(["4", f"{len(b)} of {len(grids.CORRUPTIONS)}: p = "
                 + (", ".join(f"{p:g}" for p in sorted(b)) or "none"),
                 "the others not run yet" if len(b) < len(grids.CORRUPTIONS) else "done"])
    imp = done("implicit_n10000", lambda r: True)
    rows.append(["5", f"{len(imp)} of 2: " + (", ".join(
        "with batch norm" if r.tags()["model"] == "inception" else "without batch norm"
        for r in imp) or "none"), "the others not run yet" if len(imp) < 2 else "done"])
    rows.append(["6-9", "none", "not run yet"])
    return md_table(["#", "finished points (records in docs/results/)", "the rest"], rows)


REGIONS = {
    "readme_figure1": ("README.md", readme_figure1),
    "readme_convnets": ("README.md", readme_convnets),
    "linear_rule": ("docs/experiments.md", linear_rule),
    "linear_control": ("docs/experiments.md", linear_control),
    "linear_control_prose": ("docs/experiments.md", linear_control_prose),
    "figure1_cpu_figure": ("docs/experiments.md", figure1_cpu_figure),
    "figure1_cpu": ("docs/experiments.md", lambda R: figure1_table(R, "figure1_cpu")),
    "table1_cpu": ("docs/experiments.md", lambda R: table1_table(R, "table1_cpu")),
    "figure1_paper_mlp": ("docs/experiments.md", figure1_paper_mlp),
    "dynamics_example": ("docs/experiments.md", dynamics_example),
    "small_example": ("docs/training.md", small_example),
    "results_size": ("docs/results.md", results_size),
    "theorem1": ("docs/theory.md", theorem1_table),
    "theorem1_true": ("docs/theory.md", theorem1_true),
    "rademacher": ("docs/theory.md", rademacher_table),
    "kernel_table": ("docs/theory.md", kernel_table),
    "kernel_curve": ("docs/theory.md", kernel_curve_table),
    "kernel_patch_curve": ("docs/theory.md", kernel_patch_curve_table),
    "kernel_patch_prose": ("docs/theory.md", kernel_patch_prose),
    "readme_kernel_patches32000": ("README.md", readme_kernel_patches32000),
    "kernel_design": ("docs/theory.md", kernel_design_table),
    "kernel_ridge_sizes": ("docs/theory.md", kernel_ridge_sizes_table),
    "kernel_ridge_n": ("docs/theory.md", kernel_ridge_n_table),
    "precision": ("docs/runplan.md", precision_table),
    "alexnet_figure1_paper": ("docs/runplan.md", alexnet_figure1_paper),
    "inception_figure1bc_n10000": ("docs/runplan.md", inception_figure1bc_n10000),
    "implicit_n10000": ("docs/runplan.md", implicit_n10000),
    "runplan_status": ("docs/runplan.md", runplan_status),
    "table1_paper": ("docs/runplan.md", table1_paper_rows),
    "inception_figure1a_n10000": ("docs/runplan.md", inception_figure1a_n10000),
}
NOT_YET = "(not yet rerun: no record in docs/results; see docs/results.md, the run plan)"


def generate(R=None, names=None):
    """{region name: its text} from the records; a region whose records are missing gets
    NOT_YET instead of numbers."""
    R = R or Records()
    out = {}
    for name, (_, fn) in REGIONS.items():
        if names is not None and name not in names:
            continue
        try:
            out[name] = fn(R)
        except MissingRecord:
            out[name] = NOT_YET
    return out


# ------------------------------------------------------------------ figures
def _figure1_suite(R, experiment, out_name, models=None):
    from rethinkgen_tf import plots
    runs = R.runs(experiment)
    if models:
        runs = [r for r in runs if r.tags()["model"] in models]
    if not runs:
        raise MissingRecord(f"no runs of {', '.join(models)} in {R.root / experiment}")
    return _drawn(out_name, lambda d: plots.figure1(figure1_pairs(runs), d), "figure1.png")


def _drawn(out_name, draw, produced):
    """docs/figures/<out_name>.png: the picture `produced` that draw(directory) writes (a
    suite's plot function) into a temporary directory, copied; the pdf beside it is dropped."""
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        draw(d)
        (ROOT / FIGURES).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(Path(d) / produced, ROOT / FIGURES / f"{out_name}.png")
    return ROOT / FIGURES / f"{out_name}.png"


def _kernel_figure(R):
    from rethinkgen_tf import plots
    s = R.json("kernel/cifar10_conv32000.json")
    path = ROOT / FIGURES / "kernel_cifar10_conv_curve_n50000.png"
    plots.kernel_curve(s, path)
    path.with_suffix(".pdf").unlink(missing_ok=True)
    return path


def _kernel_patch_figure(R):
    """The patch filters' curves (each seed's largest run) beside the Gaussian filters'."""
    from rethinkgen_tf import plots
    path = ROOT / FIGURES / "kernel_cifar10_patch_curve_n50000.png"
    plots.kernel_curve(R.json("kernel/cifar10_conv32000.json"), path,
                       more=[(f"patch filters, {name}", s) for name, s in _patch_runs(R)])
    path.with_suffix(".pdf").unlink(missing_ok=True)
    return path


def _implicit_figure(R):
    from rethinkgen_tf import plots
    runs = [r for r in R.runs("implicit_n10000") if r.tags()["seed"] == 0]
    return _drawn("figure2b_inception_n10000",
                  lambda d: plots.implicit(_pairs(runs, {"model", "seed"}), d), "figure2b.png")


def _dynamics_figure(R):
    from rethinkgen_tf import plots
    (run,) = R.runs("dynamics")
    out = ROOT / FIGURES / "dynamics_mlp_1x512_p0.5_n10000"
    plots.dynamics([run.dir], out)
    Path(f"{out}.pdf").unlink(missing_ok=True)  # (not with_suffix: the name holds "p0.5")
    return Path(f"{out}.png")


FIGURE_MAKERS = {
    "figure1_cpu_mlp_linear_n10000": lambda R: _figure1_suite(
        R, "figure1_cpu", "figure1_cpu_mlp_linear_n10000"),
    "figure1_mlp_1x512_n50000": lambda R: _figure1_suite(
        R, "figure1_paper", "figure1_mlp_1x512_n50000", ["mlp_1x512"]),
    "figure1_alexnet_n50000": lambda R: _figure1_suite(
        R, "figure1_paper", "figure1_alexnet_n50000", ["alexnet"]),
    "figure1_inception_n10000": lambda R: _figure1_suite(
        R, "figure1_n10000", "figure1_inception_n10000", ["inception"]),
    "figure2b_inception_n10000": _implicit_figure,
    "kernel_cifar10_conv_curve_n50000": _kernel_figure,
    "kernel_cifar10_patch_curve_n50000": _kernel_patch_figure,
    "dynamics_mlp_1x512_p0.5_n10000": _dynamics_figure,
}


def draw_figures(R=None):
    """Redraws every figure of docs/figures whose records exist; {name: path or None}.
    A figure whose records are missing is removed (no picture without its record)."""
    R = R or Records()
    out = {}
    for name, fn in FIGURE_MAKERS.items():
        try:
            out[name] = str(fn(R))
        except MissingRecord:
            (ROOT / FIGURES / f"{name}.png").unlink(missing_ok=True)
            out[name] = None
    return out


# ------------------------------------------------------------------ regions in the docs
REGION = re.compile(r"<!-- report:([\w.-]+) -->\n(.*?)\n?<!-- /report:\1 -->", re.S)


def regions(text):
    """{name: body} of the generated regions of a doc's text."""
    return {m.group(1): m.group(2) for m in REGION.finditer(text)}


def fill(text, generated):
    """text with every region named in `generated` replaced by its new body."""
    def sub(m):
        name = m.group(1)
        body = generated.get(name, m.group(2))
        return f"<!-- report:{name} -->\n{body}\n<!-- /report:{name} -->"
    return REGION.sub(sub, text)


def write_docs(R=None, root=None):
    """Fills the generated regions of the docs under `root` (the repository); returns
    {doc: [region names written]}.  ValueError if a region of REGIONS is in no doc."""
    root = Path(root) if root is not None else ROOT
    gen = generate(R)
    done = {}
    for doc in DOCS:
        path = root / doc
        text = path.read_text()
        names = [n for n in regions(text) if n in gen]
        if names:
            new = fill(text, gen)
            if new != text:
                results.atomic_write(path, new)
            done[doc] = names
    placed = {n for v in done.values() for n in v}
    missing = [n for n in REGIONS if n not in placed]
    if missing:
        raise ValueError(f"generated regions in no doc: {', '.join(missing)} (add "
                         "<!-- report:NAME --> markers)")
    return done


# ------------------------------------------------------------------ prose claims
@dataclasses.dataclass(frozen=True)
class Claim:
    """A sentence fragment of `doc` quoting numbers: `template`'s fields ({name:format})
    are computed by `values[name](Records)`; the formatted text must be in the doc."""
    doc: str
    template: str
    values: dict

    def text(self, R):
        return self.template.format(**{k: f(R) for k, f in self.values.items()})


KP4, KP4S1 = "kernel/cifar10_patches4096.json", "kernel/cifar10_patches4096_fs1.json"


def _k(rel, *path, scale=1.0):
    def get(R):
        v = R.json(rel)
        for p in path:
            v = v[p]
        return scale * v
    return get


def _curve(rel, filters, key, scale=100.0):
    def get(R):
        (c,) = [c for c in R.json(rel)["curve"] if c["filters"] == filters]
        return scale * c[key]
    return get


K_RAW, K16, K32 = ("kernel/cifar10_raw.json", "kernel/cifar10_conv16384.json",
                   "kernel/cifar10_conv32000.json")
K16W, K32W = "kernel/cifar10_conv16384_wide.json", "kernel/cifar10_conv32000_wide.json"


def _raw_val_at(factor):
    def get(R):
        return 100 * min(c["val_error"] for c in R.json(K_RAW)["validation"]["curve"]
                         if c["ridge"] == 0 and abs(c["factor"] - factor) < 1e-3)
    return get


def _wide_val(rel, factor):
    """The validation error of the ridge row's ridge at `factor` x median."""
    def get(R):
        s = R.json(rel)
        return 100 * min(c["val_error"] for c in s["validation"]["curve"]
                         if c["ridge"] == s["ridge"]["ridge"] and abs(c["factor"] - factor) < 1e-3)
    return get


CLAIMS = [
    Claim("README.md", "the kernel experiment gives {raw:.1f}% test error on raw pixels",
          {"raw": _k(K_RAW, "results", "true", "test_error", scale=100)}),
    Claim("README.md", "and {c32:.1f}% on the paper's 32,000 random conv filters",
          {"c32": _k(K32, "results", "true", "test_error", scale=100)}),
    Claim("README.md", "with 4,096 whitened training patches as filters (the default) "
          "{p4:.1f}% and {p4s1:.1f}%\n(filter seeds 0 and 1), {p4r:.1f}% and {p4rs1:.1f}% with the "
          "validated ridge (paper 15%)",
          {"p4": _k(KP4, "results", "true", "test_error", scale=100),
           "p4s1": _k(KP4S1, "results", "true", "test_error", scale=100),
           "p4r": _k(KP4, "results", "true_ridge", "test_error", scale=100),
           "p4rs1": _k(KP4S1, "results", "true_ridge", "test_error", scale=100)}),
    Claim("README.md", "{c16:.1f}% at 16,384, {c1k:.1f}% at 1,024)",
          {"c16": _k(K16, "results", "true", "test_error", scale=100),
           "c1k": _curve(K32, 1024, "test_error")}),
    Claim("docs/theory.md", "raw pixels reach {raw:.1f}% test error",
          {"raw": _k(K_RAW, "results", "true", "test_error", scale=100)}),
    Claim("docs/theory.md", "validated bandwidth ({f:.3f} x the median distance; validation "
          "error\n{v:.1f}%",
          {"f": _k(K_RAW, "bandwidth_factor"),
           "v": _k(K_RAW, "validation", "interpolation", "val_error", scale=100)}),
    Claim("docs/theory.md", "paper's 32,000 filters reach **{i:.2f}%** interpolating and "
          "**{r:.2f}%** with the validated ridge\n(16,384 filters: {i16:.2f}% and {r16:.2f}%)",
          {"i": _k(K32, "results", "true", "test_error", scale=100),
           "r": _k(K32, "results", "true_ridge", "test_error", scale=100),
           "i16": _k(K16, "results", "true", "test_error", scale=100),
           "r16": _k(K16, "results", "true_ridge", "test_error", scale=100)}),
    Claim("docs/theory.md", "set ({rand:.1f}%)", {"rand": _k(K32, "results", "random",
                                                            "test_error", scale=100)}),
    Claim("docs/theory.md", "against {med:.1f}% at the median", {"med": _raw_val_at(1.0)}),
    Claim("docs/theory.md", "({c1k:.1f}%\nat 1,024, {c8k:.1f}% at 8,192)",
          {"c1k": _curve(K32, 1024, "test_error"), "c8k": _curve(K32, 8192, "test_error")}),
    Claim("docs/theory.md", "({i16:.2f}% at 16,384,\n{i32:.2f}% at 32,000; the validation "
          "error is flat from 4,096 on, {lo:.1f}-{hi:.1f}%)",
          {"i16": _k(K16, "results", "true", "test_error", scale=100),
           "i32": _k(K32, "results", "true", "test_error", scale=100),
           "lo": lambda R: min(100 * c["val_error"] for c in R.json(K32)["curve"]
                               if c["filters"] >= 4096),
           "hi": lambda R: max(100 * c["val_error"] for c in R.json(K32)["curve"]
                               if c["filters"] >= 4096)}),
    Claim("docs/theory.md", "at 16,384 filters were {v16:.1f}% (interpolant)\nand {r16:.1f}% "
          "(ridge row); at 32,000, {v32:.1f}% and {r32:.1f}%",
          {"v16": _k(K16, "validation", "interpolation", "val_error", scale=100),
           "r16": _k(K16, "validation", "ridge", "val_error", scale=100),
           "v32": _k(K32, "validation", "interpolation", "val_error", scale=100),
           "r32": _k(K32, "validation", "ridge", "val_error", scale=100)}),
    Claim("docs/theory.md", "as for raw pixels ({v:.1f}% to {t:.1f}%)",
          {"v": _k(K_RAW, "validation", "interpolation", "val_error", scale=100),
           "t": _k(K_RAW, "results", "true", "test_error", scale=100)}),
    Claim("docs/theory.md", "stays the validation's choice\n({a:.2f}%; 2.83 x: {b:.2f}%)",
          {"a": _k(K16W, "validation", "ridge", "val_error", scale=100),
           "b": _wide_val(K16W, 2.83)}),
    Claim("docs/theory.md", "reproduces every number of (4)\n({i:.2f}%, {r:.2f}%, {x:.1f}%)",
          {"i": _k(K16W, "results", "true", "test_error", scale=100),
           "r": _k(K16W, "results", "true_ridge", "test_error", scale=100),
           "x": _k(K16W, "results", "random", "test_error", scale=100)}),
    Claim("docs/theory.md", "prefers 2.83 x median ({a:.2f}% against\n{b:.2f}% at 2 x",
          {"a": _k(K32W, "validation", "ridge", "val_error", scale=100),
           "b": _wide_val(K32W, 2.0)}),
    Claim("docs/theory.md", "gives **{t:.2f}%** test error with train error {tr:.1f}% "
          "(2 x: {t2:.2f}%, train {tr2:.2f}%)",
          {"t": _k(K32W, "results", "true_ridge", "test_error", scale=100),
           "tr": _k(K32W, "results", "true_ridge", "train_error", scale=100),
           "t2": _k(K32, "results", "true_ridge", "test_error", scale=100),
           "tr2": _k(K32, "results", "true_ridge", "train_error", scale=100)}),
    Claim("docs/theory.md", "Peak memory (max RSS) {p:.2f} GiB",
          {"p": _k(K16, "peak_rss_gib")}),
    Claim("docs/theory.md", "peak memory (max RSS) **{p:.2f} GiB**",
          {"p": _k(K32, "peak_rss_gib")}),
]

# Decimal percentages and ratios in the checked docs that are not reproduction numbers
# (the paper's values, settings, speeds): (doc, the text around them, why).
NOT_REPRODUCTIONS = [
    ("README.md", "(paper 49.49%)", "the paper's Table 1"),
    ("docs/experiments.md", "99.9% for MLPs", "a setting: the fit threshold"),
    ("docs/experiments.md", "99.9% training accuracy", "a setting: the fit threshold"),
    ("docs/experiments.md", "99.9% re-evaluated training accuracy", "a setting"),
    ("docs/experiments.md", "reaches\n99.34% on random labels (Table 1)", "the paper's Table 1"),
    ("docs/experiments.md", "1.5-4x", "our reading of the paper's figure"),
    ("docs/experiments.md", "1.5x-4x", "our reading of the paper's figure"),
    ("docs/experiments.md", "49.49%", "the paper's Table 1"),
    ("docs/training.md", "(0.6% of the start)", "a setting: 0.95^100"),
    ("docs/training.md", "1.4% per full MLP 1x512\n  epoch", "a speed (docs/benchmarks.md)"),
    ("docs/training.md", "99.34%", "the paper's Table 1"),
    ("docs/training.md", "an MLP as fit at 99.9%", "a setting: the fit threshold"),
    ("docs/training.md", "0.6% of the start", "a setting"),
    ("docs/training.md", "50.51%", "the paper's Table 1"),
    ("docs/theory.md", "about 0.7%", "the standard error of a 5,000-image split, computed"),
]
NUMBER = re.compile(r"(?<![\w.])\d+\.\d+(?:\s?%|x\b)")
# a parenthesis citing docs/benchmarks.md holds speeds: exempt (docs/benchmarks.md says so)
SPEED = re.compile(r"\(docs/benchmarks\.md[^)]*\)")


def _spans(text, needle):
    i = text.find(needle)
    while i >= 0:
        yield i, i + len(needle)
        i = text.find(needle, i + 1)


def problems(root=None, R=None):
    """Every disagreement between the docs under `root` and the records: a generated
    region whose text differs from the records', a claim whose text (formatted from its
    records) is not in its doc, and a decimal percentage or ratio in a checked doc that no
    region, claim or NOT_REPRODUCTIONS entry accounts for.  [] when all agree."""
    root = Path(root) if root is not None else ROOT
    R = R or Records()
    gen = generate(R)
    out, covered = [], {doc: [] for doc in DOCS}
    texts = {doc: (root / doc).read_text() for doc in DOCS}
    for doc, text in texts.items():
        for m in REGION.finditer(text):
            name = m.group(1)
            covered[doc].append(m.span())
            if name not in gen:
                out.append(f"{doc}: region {name!r} is generated by nothing (report.REGIONS)")
            elif m.group(2).strip() != gen[name].strip():
                out.append(f"{doc}: region {name!r} differs from its records; run "
                           "python -m experiments.report")
    for c in CLAIMS:
        try:
            want = c.text(R)
        except MissingRecord as e:
            out.append(f"{c.doc}: {c.template!r} has no record: {e}")
            continue
        spans = list(_spans(texts[c.doc], want))
        if not spans:
            out.append(f"{c.doc}: the records give {want!r}, not in the doc")
        covered[c.doc] += spans
    for doc, snippet, _ in NOT_REPRODUCTIONS:
        covered[doc] += list(_spans(texts[doc], snippet))
    for doc in SCANNED:
        covered[doc] += [m.span() for m in SPEED.finditer(texts[doc])]
    for doc in SCANNED:
        text = texts[doc]
        for m in NUMBER.finditer(text):
            if not any(a <= m.start() and m.end() <= b for a, b in covered[doc]):
                line = text.count("\n", 0, m.start()) + 1
                out.append(f"{doc}:{line}: {m.group(0)!r} has no record behind it (add a "
                           "report region or claim, or list it in NOT_REPRODUCTIONS)")
    return out

