"""Every command-line entry point as a user runs it: `python -m <module> ...` in a subprocess.

experiments.expressivity, experiments.kernel and experiments.imagenet: each flag path runs end to
end on tiny synthetic data, and bad flags (negative sizes, nonsense values, missing data) end the
program with one line `error: ...` and a non-zero exit, never a traceback.  Every other entry
point: `--help` exits with 0 and lists its flags, and one invalid flag value gives exactly one line
on stderr and a non-zero exit.

Each subprocess pays ~3 s to import TensorFlow (the `experiments` and `benchmarks` packages import
it first), so the short cases (--help, bad flags) run two at a time in the background (`ran`), and
the flag-level checks of each module (bounds, validators) run in one process per module.
"""
import gzip
import json
import os
import pickle
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest

pytestmark = pytest.mark.slow  # subprocesses and real training: make test-fast skips these

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 600

def _ours(stderr):
    """The non-empty stderr lines: every entry point loads TensorFlow through
    rethinkgen_tf.entry, so none of TensorFlow's load-time C++ log lines (oneDNN
    on AVX-512 machines) may appear here."""
    return [l for l in stderr.splitlines() if l.strip()]


def _env(tmp):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RETHINKGEN_DATA_CACHE": str(tmp / "cache")}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    return env


def run_module(module, args, tmp, timeout=TIMEOUT):
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=ROOT, env=_env(tmp),
                          capture_output=True, text=True, timeout=timeout)


def assert_one_error_line(p, *fragments):
    """Exit code non-zero, no traceback, exactly one line of ours on stderr: `error: ...`."""
    lines = _ours(p.stderr)
    assert p.returncode != 0, (p.returncode, p.stdout[-2000:], p.stderr[-2000:])
    assert "Traceback" not in p.stderr, p.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), p.stderr[-3000:]
    for f in fragments:
        assert f in lines[0], (f, lines[0])


def assert_ok(p):
    assert p.returncode == 0, (p.stdout[-2000:], p.stderr[-3000:])
    assert "Traceback" not in p.stderr, p.stderr[-3000:]


# --------------------------------------------------------------------------- synthetic data
def _write_idx(path, arr):
    arr = np.asarray(arr, np.uint8)
    header = bytes([0, 0, 8, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.tobytes())


def write_idx_dataset(d, n=24, test_n=10, seed=0, duplicate=False):
    """MNIST / Fashion-MNIST IDX files: n + test_n random 28x28 images, labels i mod 10."""
    d.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for prefix, m in (("train", n), ("t10k", test_n)):
        x = rng.integers(0, 256, (m, 28, 28))
        if duplicate and prefix == "train":
            x[5] = x[2]
        _write_idx(d / f"{prefix}-images-idx3-ubyte.gz", x)
        _write_idx(d / f"{prefix}-labels-idx1-ubyte.gz", np.arange(m) % 10)
    return d


def write_cifar_dataset(d, per_batch=4, test_n=10, seed=0):
    """CIFAR-10 python pickles: 5 x per_batch training and test_n test images, 32x32x3."""
    d.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for name, m in [(f"data_batch_{i}", per_batch) for i in range(1, 6)] + [("test_batch", test_n)]:
        with open(d / name, "wb") as f:
            pickle.dump({b"data": rng.integers(0, 256, (m, 3072), dtype=np.uint8),
                         b"labels": [int(v) for v in rng.integers(0, 10, m)]}, f)
    return d


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from imagenet_shards import write_shards
    tmp = tmp_path_factory.mktemp("entry_points")
    shards = tmp / "imagenet"
    shards.mkdir()
    write_shards(shards, {"train-00000-of-00001": 4, "validation-00000-of-00001": 2}, num_classes=3,
                 size=(80, 100))
    (tmp / "a_file").write_text("not a directory\n")
    return {"tmp": tmp, "idx": write_idx_dataset(tmp / "idx"), "cifar": write_cifar_dataset(tmp / "cifar"),
            "dup": write_idx_dataset(tmp / "dup", n=8, duplicate=True), "imagenet": shards}


# --------------------------------------------------------------------------- short cases, in the background
class Case(NamedTuple):
    id: str
    module: str
    args: tuple            # str.format'ed with the `data` paths
    expect: tuple = ()     # help: flags listed; error: fragments of the error line


def _help(module, *flag_names):
    return pytest.param(Case(module, module, ("--help",), flag_names), id=module)


def _error(id_, module, args, *fragments):
    return pytest.param(Case(id_, module, tuple(args), fragments), id=id_)


HELP = [
    _help("experiments.expressivity", "rademacher_models", "knot", "depth", "labels"),
    _help("experiments.kernel", "features", "method", "bandwidth", "ridge"),
    _help("experiments.imagenet", "randomize", "max_steps", "rmsprop_epsilon", "augment"),
    _help("experiments.figure1", "scale", "parts"),
    _help("experiments.table1", "models", "table4"),
    _help("experiments.implicit", "scale", "shard"),
    _help("experiments.mnist", "corrupt", "randomize"),
    _help("experiments.cifar", "corrupt", "model"),
    _help("benchmarks.ops", "repeats", "examples"),
    _help("benchmarks.pipeline", "batches", "synthetic"),
    _help("benchmarks.train", "steps", "models"),
]

# One invalid flag value per entry point: a flag error.
BAD_FLAG = [
    _error("expressivity", "experiments.expressivity", ["--n=-1"], "--n"),
    _error("kernel", "experiments.kernel", ["--bandwidth=-1"], "--bandwidth"),
    _error("imagenet", "experiments.imagenet", ["--data_dir={imagenet}", "--batch_size=0"], "--batch_size"),
    _error("figure1", "experiments.figure1", ["--scale=huge"], "--scale"),
    _error("table1", "experiments.table1", ["--table4=maybe"], "--table4"),
    _error("implicit", "experiments.implicit", ["--scale=huge"], "--scale"),
    _error("mnist", "experiments.mnist", ["--dataset=cifar10"], "--dataset"),
    _error("cifar", "experiments.cifar", ["--corrupt=2"], "--corrupt"),
    _error("ops", "benchmarks.ops", ["--repeats=abc"], "--repeats"),
    _error("pipeline", "benchmarks.pipeline", ["--batches=abc"], "--batches"),
    _error("train", "benchmarks.train", ["--steps=abc"], "--steps"),
]

# Values that pass flag parsing but not the run: caught in main, one line as well.
EXPRESSIVITY = ["experiments.expressivity", "--dataset=mnist", "--data_dir={idx}", "--n=6", "--test_n=4"]
KERNEL = ["experiments.kernel", "--dataset=mnist", "--data_dir={idx}", "--n=6", "--test_n=4"]
IMAGENET = ["experiments.imagenet", "--data_dir={imagenet}", "--image_size=75", "--num_classes=3"]


def _run_error(id_, cmd, extra, *fragments):
    return _error(id_, cmd[0], [*cmd[1:], *extra], *fragments)


RUN_ERRORS = [
    _run_error("expressivity-no-data", EXPRESSIVITY, ["--data_dir={tmp}/missing"], "missing"),
    _run_error("expressivity-duplicates", EXPRESSIVITY, ["--data_dir={dup}", "--n=8"], "identical"),
    _run_error("expressivity-model", EXPRESSIVITY, ["--rademacher_models=mlp_1x8,resnet"], "unknown model 'resnet'"),
    _run_error("expressivity-model-input", EXPRESSIVITY, ["--rademacher_models=inception_v3"], "75x75"),
    _run_error("expressivity-out", EXPRESSIVITY, ["--out={tmp}/missing/summary.json"], "--out"),
    _run_error("expressivity-depth", EXPRESSIVITY, ["--depth=9"], "--depth=9"),
    _run_error("expressivity-argument", EXPRESSIVITY, ["stray"], "unexpected arguments"),
    _run_error("kernel-no-data", KERNEL, ["--data_dir={tmp}/missing"], "missing"),
    _run_error("kernel-one-image", KERNEL, ["--n=1"], "--bandwidth"),
    _run_error("kernel-conv-too-large", KERNEL, ["--features=random_conv", "--conv_kernel=26"], "--conv_kernel"),
    _run_error("kernel-conv-no-grid", KERNEL, ["--features=random_conv", "--conv_kernel=28"], "--conv_kernel"),
    _run_error("kernel-out", KERNEL, ["--out={tmp}"], "is a directory"),
    _run_error("imagenet-no-data-dir", IMAGENET[:1], [], "--data_dir"),
    _run_error("imagenet-missing-data", IMAGENET, ["--data_dir={tmp}/missing"], "--data_dir"),
    _run_error("imagenet-train-dir", IMAGENET, ["--train_dir={a_file}/run"], "--train_dir"),
    _run_error("imagenet-corrupt-labels", IMAGENET, ["--train_dir={tmp}/unused", "--randomize=labels",
                                                     "--corrupt=0.5"], "corrupt"),
]


def _paths(data):
    return {"tmp": data["tmp"], "idx": data["idx"], "cifar": data["cifar"], "dup": data["dup"],
            "imagenet": data["imagenet"], "a_file": data["tmp"] / "a_file"}


@pytest.fixture(scope="module", autouse=True)
def ran(request, data):
    """{case: Future of its CompletedProcess}: the selected short cases, two at a time, started with the
    module's first test so that they run while the longer tests do (their tests come last)."""
    cases = set()
    for item in request.session.items:
        spec = getattr(item, "callspec", None)
        if item.module is request.module and spec is not None and "case" in spec.params:
            cases.add(spec.params["case"])
    paths = _paths(data)
    with ThreadPoolExecutor(max_workers=2) as pool:
        yield {c: pool.submit(run_module, c.module, [a.format(**paths) for a in c.args], data["tmp"])
               for c in sorted(cases)}


# --------------------------------------------------------------------------- flag checks, one process per module
_PARSE = """
import importlib, json, sys
from absl import flags

importlib.import_module(sys.argv[1])
out = []
for args in json.loads(sys.argv[2]):
    flags.FLAGS.unparse_flags()
    try:
        flags.FLAGS(["prog", *args])
        out.append(None)
    except flags.Error as e:
        out.append(str(e))
print(json.dumps(out))
"""

FLAG_CHECKS = {
    # module: ([rejected args], [accepted args]); a rejected value must name its flag
    "experiments.expressivity": (
        [["--n=0"], ["--test_n=-5"], ["--knot=0"], ["--knot=0.7"], ["--knot=nan"], ["--tries=0"], ["--depth=1"],
         ["--depth=-2"], ["--seed=-1"], ["--rademacher_n=0"], ["--rademacher_draws=0"],
         ["--rademacher_epochs=-1"], ["--labels=maybe"], ["--dataset=imagenet"]],
        [["--knot=0.5"], ["--depth=2"], ["--depth=0"], ["--n=1"], ["--rademacher_models=mlp_1x8,alexnet"]]),
    "experiments.kernel": (
        [["--n=0"], ["--test_n=0"], ["--conv_filters=0"], ["--conv_kernel=0"], ["--conv_pool=-1"],
         ["--bandwidth=0"], ["--bandwidth=inf"], ["--bandwidth=nan"], ["--bandwidth_factor=-0.5"],
         ["--tol=-1"], ["--tol=nan"], ["--max_abs_tol=-1"], ["--maxiter=0"], ["--ridge=-1e-3"], ["--ridge=inf"],
         ["--seed=-1"], ["--method=lu"], ["--features=pixels"]],
        [["--ridge=0"], ["--tol=0"], ["--bandwidth=2.5"], ["--bandwidth_factor=0.1"]]),
    "experiments.imagenet": (
        [["--batch_size=0"], ["--max_steps=0"], ["--num_epochs=0"], ["--initial_learning_rate=0"],
         ["--initial_learning_rate=nan"], ["--num_epochs_per_decay=0"], ["--learning_rate_decay_factor=0"],
         ["--learning_rate_decay_factor=1.5"], ["--rmsprop_decay=1"], ["--rmsprop_momentum=-0.1"],
         ["--rmsprop_epsilon=0"], ["--rmsprop_epsilon=inf"], ["--image_size=74"], ["--corrupt=1.5"],
         ["--dropout=1"], ["--weight_decay=-1"], ["--weight_decay=inf"], ["--train_size=0"],
         ["--train_eval_size=-1"], ["--num_classes=1"], ["--seed=-1"], ["--seed=4294967296"],
         ["--randomize=pixels"], ["--strategy=cluster"]],
        [["--rmsprop_decay=0"], ["--learning_rate_decay_factor=1"], ["--train_eval_size=0"], ["--image_size=75"]]),
}


@pytest.mark.parametrize("module", sorted(FLAG_CHECKS))
def test_flag_values(module, tmp_path):
    bad, good = FLAG_CHECKS[module]
    required = ["--data_dir=x"] if module == "experiments.imagenet" else []
    cases = [required + a for a in bad + good]
    p = subprocess.run([sys.executable, "-c", _PARSE, module, json.dumps(cases)], cwd=ROOT, env=_env(tmp_path),
                       capture_output=True, text=True, timeout=TIMEOUT)
    assert p.returncode == 0, p.stderr[-3000:]
    errors = json.loads(p.stdout.strip().splitlines()[-1])
    for args, err in zip(bad, errors):
        name = args[0].split("=")[0]
        assert err is not None, f"{module} accepts {args}"
        assert name in err and "\n" not in err, (args, err)
    for args, err in zip(good, errors[len(bad):]):
        assert err is None, (args, err)


# --------------------------------------------------------------------------- expressivity
def test_expressivity_random_labels_keras_rademacher(data, tmp_path):
    """CIFAR-10 layout, random labels, Keras float64/float32 models, Rademacher estimates (28x28 crops)."""
    out = tmp_path / "summary.json"
    p = run_module("experiments.expressivity", [
        "--dataset=cifar10", f"--data_dir={data['cifar']}", "--n=16", "--test_n=6", "--labels=random",
        "--rademacher_models=mlp_1x8", "--rademacher_n=10", "--rademacher_draws=1", "--rademacher_epochs=2",
        f"--out={out}"], tmp_path)
    assert_ok(p)
    s = json.loads(out.read_text())
    t = s["theorem1"]
    assert (t["n"], t["d"], t["num_classes"], t["labels"]) == (16, 32 * 32 * 3, 10, "random")
    assert t["weights"] == t["d"] + 16 + 16 * 10
    assert t["train_acc_numpy_float64"] == 1.0 and t["train_acc_keras_float64"] == 1.0
    assert 0.0 <= t["train_acc_keras_float32"] <= 1.0 and "deep" not in t
    r = s["rademacher"]
    assert set(r) == {"mlp_1x8", "theorem1"}
    assert r["theorem1"]["estimate"] == 1.0 and r["theorem1"]["n"] == 10
    assert len(r["mlp_1x8"]["draws"]) == 1 and -1.0 <= r["mlp_1x8"]["estimate"] <= 1.0
    assert f"wrote {out}" in p.stdout


def test_expressivity_true_labels_depth(data, tmp_path):
    """IDX layout, true labels, no Keras models, the depth-k network, midpoint knots, one direction."""
    out = tmp_path / "summary.json"
    p = run_module("experiments.expressivity", [
        "--dataset=fashion_mnist", f"--data_dir={data['idx']}", "--n=12", "--test_n=5", "--labels=true",
        "--nokeras", "--depth=4", "--knot=0.5", "--tries=1", "--seed=3", f"--out={out}"], tmp_path)
    assert_ok(p)
    s = json.loads(out.read_text())
    t = s["theorem1"]
    assert (s["knot"], s["seed"], t["labels"], t["n"], t["d"]) == (0.5, 3, "true", 12, 28 * 28)
    assert t["train_acc_numpy_float64"] == 1.0
    assert not any(k.startswith("train_acc_keras") for k in t) and "rademacher" not in s
    assert t["deep"]["depth"] == 4 and len(t["deep"]["widths"]) == 3 and t["deep"]["train_acc"] == 1.0


# --------------------------------------------------------------------------- kernel
def _finite(obj):
    if isinstance(obj, dict):
        return all(_finite(v) for v in obj.values())
    return not isinstance(obj, float) or np.isfinite(obj)


def test_kernel_raw_direct(data, tmp_path):
    """Raw pixels, auto -> direct solver, true + random labels, ridge, default bandwidth 0.25 x median."""
    out = tmp_path / "kernel.json"
    p = run_module("experiments.kernel", ["--dataset=fashion_mnist", f"--data_dir={data['idx']}", "--n=20",
                                          "--test_n=8", f"--out={out}"], tmp_path)
    assert_ok(p)
    s = json.loads(out.read_text())
    assert (s["solver"], s["features"], s["dim"], s["n"], s["test_n"]) == ("direct", "raw", 784, 20, 8)
    assert s["sigma"] == pytest.approx(0.25 * s["median_distance"])
    assert set(s["results"]) == {"true", "random", "true_ridge"}
    assert s["results"]["true"]["train_error"] == 0.0 and s["results"]["random"]["train_error"] == 0.0
    assert _finite(s)


def test_kernel_random_conv_mixed(data, tmp_path):
    """Random conv features, the mixed solver (float32 Cholesky + CG) with and without the ridge, a class
    absent from the labels (a zero right-hand side), --bandwidth_factor."""
    out = tmp_path / "kernel.json"
    p = run_module("experiments.kernel", [
        "--dataset=cifar10", f"--data_dir={data['cifar']}", "--n=8", "--test_n=4", "--features=random_conv",
        "--conv_filters=4", "--conv_kernel=5", "--conv_pool=2", "--method=mixed", "--bandwidth_factor=2",
        "--tol=1e-6", "--max_abs_tol=1e-5", "--maxiter=20", "--seed=1", f"--out={out}"], tmp_path)
    assert_ok(p)
    assert "RuntimeWarning" not in p.stderr, p.stderr[-2000:]
    s = json.loads(out.read_text())
    assert (s["solver"], s["features"], s["dim"]) == ("mixed", "random_conv", 2 * 2 * 4)
    assert (s["conv_filters"], s["conv_kernel"], s["conv_pool"]) == (4, 5, 2)
    assert s["sigma"] == pytest.approx(2 * s["median_distance"])
    assert _finite(s), s  # 8 labels of 10 classes: the solver meets zero columns
    assert s["results"]["true"]["train_error"] == 0.0 and s["results"]["random"]["train_error"] == 0.0
    assert s["results"]["true"]["max_abs_residual"] <= 1e-5 and 1 <= s["iterations"] <= 20
    assert s["results"]["true_ridge"]["iterations"] >= 1


def test_kernel_bandwidth_no_ridge_true_labels(data, tmp_path):
    """--bandwidth, --method=direct, --ridge=0 (skipped), --norandom_labels, one training image."""
    out = tmp_path / "kernel.json"
    p = run_module("experiments.kernel", ["--dataset=mnist", f"--data_dir={data['idx']}", "--n=1", "--test_n=3",
                                          "--method=direct", "--bandwidth=5", "--ridge=0", "--norandom_labels",
                                          f"--out={out}"], tmp_path)
    assert_ok(p)
    s = json.loads(out.read_text())
    assert (s["sigma"], s["n"], s["method"], s["median_distance"]) == (5.0, 1, "direct", None)
    assert set(s["results"]) == {"true"} and s["results"]["true"]["train_error"] == 0.0


# --------------------------------------------------------------------------- imagenet
def test_imagenet_epochs_augment_gaussian(data, tmp_path):
    """--num_epochs (no --max_steps), Inception augmentation, Gaussian images, --train_eval_size=0 (all),
    --train_size/--test_size, one_device; then the finished run is kept, and a different config in its
    directory is one line."""
    run = tmp_path / "run"
    args = [f"--data_dir={data['imagenet']}", f"--train_dir={run}", "--image_size=75", "--num_classes=3",
            "--batch_size=2", "--num_epochs=1", "--train_size=2", "--test_size=2", "--train_eval_size=0",
            "--randomize=gaussian", "--augment", "--strategy=one_device", "--dropout=0", "--weight_decay=0",
            "--seed=1"]
    p = run_module("experiments.imagenet", args, tmp_path)
    assert_ok(p)
    res = json.loads((run / "result.json").read_text())
    assert (res["steps"], res["model"], res["randomize"]) == (1, "inception_v3", "gaussian")
    train, data_cfg = res["config"]["train"], res["config"]["data"]
    assert (train["epochs"], train["max_steps"], train["train_eval_size"]) == (1, None, None)
    assert (train["strategy"], train["dropout"], train["weight_decay"], train["seed"]) == ("one_device", 0.0, 0.0, 1)
    assert (data_cfg["augment"], data_cfg["train_size"], data_cfg["test_size"]) == ("imagenet", 2, 2)
    assert 0.0 <= res["final"]["test_acc"] <= res["final"]["test_top5"] <= 1.0
    assert f"{run}: 1 steps" in p.stdout
    p = run_module("experiments.imagenet", args, tmp_path)  # finished: not redone
    assert_ok(p)
    assert "finished already" in p.stderr + p.stdout
    p = run_module("experiments.imagenet", args + ["--seed=2"], tmp_path)
    assert_one_error_line(p, "different config", "--overwrite")


# --------------------------------------------------------------------------- the short cases' results
@pytest.mark.parametrize("case", HELP)
def test_help(ran, case):
    p = ran[case].result()
    assert p.returncode == 0, (p.returncode, p.stderr[-2000:])
    assert _ours(p.stderr) == [], p.stderr[-2000:]
    for name in case.expect:  # listed as a flag (absl: "  --name: ...", "  --[no]name: ..."; argparse: "  --name X")
        assert re.search(rf"^\s+--(\[no\])?{name}\b", p.stdout, re.M), (name, p.stdout[-3000:])


@pytest.mark.parametrize("case", BAD_FLAG)
def test_bad_flag_is_one_line(ran, case):
    assert_one_error_line(ran[case].result(), *case.expect)


@pytest.mark.parametrize("case", RUN_ERRORS)
def test_run_error_is_one_line(ran, case):
    assert_one_error_line(ran[case].result(), *case.expect)
