"""The edges of the command line (issue 22): non-finite flag values, stray arguments, advice
that names flags the command lacks, Ctrl-C and SIGTERM from the first instant to the middle of
a run, out of memory, flagfiles that are not UTF-8, paths that cannot be written, and the kernel
experiment's memory.

Every user error ends a command with one line; the fast tests check the parts in process (or in
a Python without TensorFlow), the slow ones the entry points as a user runs them.
"""
import ast
import gzip
import json
import os
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from rethinkgen_tf import entry, kernels, results
from rethinkgen_tf.kernels import distances as kernel_distances

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
INTERRUPTED = "interrupted; rerun the same command to resume"


def _env(tmp=None):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if tmp is not None:
        env["RETHINKGEN_DATA_CACHE"] = str(Path(tmp) / "cache")
    return env


def _default_sigint():
    # A child of a script started with `&` inherits SIGINT ignored, and Python keeps it so:
    # give the child what a terminal gives.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run(cmd, tmp=None, timeout=600, **kw):
    return subprocess.run(cmd, cwd=ROOT, env=_env(tmp), capture_output=True, text=True,
                          timeout=timeout, preexec_fn=_default_sigint, **kw)


def module(name, *args, tmp=None):
    return run([PY, "-m", name, *map(str, args)], tmp)


def one_error_line(p, code=1):
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert p.returncode == code, (p.returncode, p.stdout[-1500:], p.stderr[-3000:])
    assert "Traceback" not in p.stderr, p.stderr[-3000:]
    assert len(lines) == 1, p.stderr[-3000:]
    return lines[0]


def write_idx(d, n=24, test_n=10, seed=0):
    """MNIST IDX files: n + test_n random 28x28 images, labels i mod 10."""
    d.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for prefix, m in (("train", n), ("t10k", test_n)):
        for kind, arr in (("images-idx3", rng.integers(0, 256, (m, 28, 28))), ("labels-idx1", np.arange(m) % 10)):
            arr = np.asarray(arr, np.uint8)
            head = bytes([0, 0, 8, arr.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in arr.shape)
            with gzip.open(d / f"{prefix}-{kind}-ubyte.gz", "wb") as f:
                f.write(head + arr.tobytes())
    return d


@pytest.fixture(scope="module")
def idx(tmp_path_factory):
    return write_idx(tmp_path_factory.mktemp("edges") / "idx")


# --------------------------------------------------------------------------- entry.run, no TensorFlow
MINI = """
from absl import flags
from rethinkgen_tf import entry
flags.DEFINE_float("rate", 0.1, "A rate.", lower_bound=0.0, upper_bound=1.0)
flags.DEFINE_float("scale", 1.0, "A scale.", lower_bound=0.0)
flags.DEFINE_multi_float("point", [], "Points.")
flags.DEFINE_integer("batch_size", 8, "Batch.")
def main(argv):
    what = flags.FLAGS.point[0] if flags.FLAGS.point else None
    if what == 1:
        raise MemoryError("Unable to allocate 1.12 TiB for an array with shape (3072, 100000000)")
    if what == 2:
        import numpy as np
        np.empty((1 << 62,), np.uint8)
    if what == 3:
        class ResourceExhaustedError(Exception):  # tf.errors' name and message, without TensorFlow
            pass
        raise ResourceExhaustedError("OOM when allocating tensor with shape[3072,100000000]\\n  [[node x]]")
    print("ran", flags.FLAGS.rate, flush=True)
entry.run(main)
"""


def mini(*args):
    return run([PY, "-c", MINI, *args])


@pytest.mark.parametrize("args, says", [
    (["--rate=nan"], "--rate=nan"),
    (["--rate=-nan"], "--rate=nan"),
    (["--scale=inf"], "--scale=inf"),
    (["--point=1", "--point=-inf"], "--point=-inf"),
    (["stray"], "unexpected arguments ['stray']"),
    (["--rate=0.5", "mlp_1x512"], "unexpected arguments ['mlp_1x512']"),
])
def test_non_finite_values_and_stray_arguments_are_one_line(args, says):
    line = one_error_line(mini(*args))
    assert line.startswith("error: ") and says in line, line
    assert "finite" in line or "unexpected" in line


def test_finite_values_still_run():
    p = mini("--rate=0.5", "--scale=1e300")
    assert p.returncode == 0 and p.stdout.strip() == "ran 0.5", p.stderr


def test_a_flagfile_that_is_not_utf8_is_one_line(tmp_path):
    ff = tmp_path / "flags.txt"
    ff.write_text("--rate=0.5\n", encoding="utf-16")
    line = one_error_line(mini(f"--flagfile={ff}"))
    assert line.startswith(f"error: --flagfile={ff} is not UTF-8 text") and "save it as UTF-8" in line
    ff.write_text("--rate=0.5\n", encoding="utf-8")
    assert mini(f"--flagfile={ff}").stdout.strip() == "ran 0.5"


@pytest.mark.parametrize("point, says", [
    ("1", "Unable to allocate 1.12 TiB"),   # MemoryError
    ("2", "Unable to allocate"),            # NumPy's _ArrayMemoryError
    ("3", "OOM when allocating tensor"),    # tf.errors.ResourceExhaustedError, by its name
])
def test_out_of_memory_is_one_line_naming_what_to_reduce(point, says):
    line = one_error_line(mini(f"--point={point}"))
    assert line.startswith("error: out of memory (") and says in line, line
    assert line.endswith("reduce --batch_size"), line  # the size flags this command has, no others


def test_resource_exhausted_is_out_of_memory():
    import tensorflow as tf
    e = tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor with shape[3072,100000000]")
    assert entry._is_oom(e) and entry.one_line(e).startswith("error: out of memory (OOM when allocating")
    assert not entry._is_oom(ValueError("x"))


# --------------------------------------------------------------------------- signals
def _catches(pid, sig):
    """Whether process pid has a handler for sig (SigCgt in /proc/pid/status)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    mask = int(re.search(r"^SigCgt:\s*([0-9a-f]+)", status, re.M).group(1), 16)
    return bool(mask >> (sig - 1) & 1)


@pytest.mark.parametrize("sig, code, says", [
    (signal.SIGINT, 130, INTERRUPTED),
    (signal.SIGTERM, 143, "terminated (SIGTERM); rerun the same command to resume"),
])
def test_a_signal_while_tensorflow_imports_is_one_line(sig, code, says):
    p = subprocess.Popen([PY, "-m", "experiments.figure1", "--help"], cwd=ROOT, env=_env(),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_default_sigint)
    # Python catches SIGINT from its start; SIGTERM only once experiments/__init__ has run its first
    # lines, before TensorFlow (which takes seconds to import): then send the signal.
    t = time.time()
    while not _catches(p.pid, signal.SIGTERM) and p.poll() is None and time.time() - t < 60:
        time.sleep(0.01)
    time.sleep(0.3)
    p.send_signal(sig)
    out, err = p.communicate(timeout=60)
    assert p.returncode == code, (p.returncode, err[-3000:])
    assert err == says + "\n" and out == ""


def test_an_interactive_import_keeps_its_own_signal_handling():
    code = ("import signal, experiments; print(signal.getsignal(signal.SIGINT) is signal.default_int_handler, "
            "signal.getsignal(signal.SIGTERM) is signal.SIG_DFL)")
    p = run([PY, "-c", code])
    assert p.stdout.split() == ["True", "True"], p.stderr[-2000:]


SETUP = (ROOT / "tests" / "tiny.py").read_text().split('SETUP = """', 1)[1].split('"""', 1)[0]
TERM_DRIVER = SETUP + """
import sys, time, keras
from rethinkgen_tf import entry
from rethinkgen_tf.train import TrainConfig, run
class Hold(keras.callbacks.Callback):  # epoch 1 is checkpointed: say so, then wait for SIGTERM
    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 1:
            print("EPOCH1", flush=True)
            time.sleep(120)
with entry.errors():
    run(TrainConfig(model="mlp_1x64", epochs=4, verbose=0), DATA, sys.argv[1], data=load(DATA, ARRAYS),
        callbacks=[Hold()])
print("FINISHED", flush=True)
"""


@pytest.mark.slow
def test_sigterm_mid_run_is_one_line_and_resumes_identically(tmp_path):
    from tiny import ARRAYS, DATA, strip

    from rethinkgen_tf.data import load
    from rethinkgen_tf.train import TrainConfig
    from rethinkgen_tf.train import run as train_run
    run_dir = tmp_path / "run"
    p = subprocess.Popen([PY, "-c", TERM_DRIVER, str(run_dir)], cwd=ROOT, env=_env(), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "EPOCH1", p.stderr.read()[-3000:]
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=120)
    lines = [line for line in err.splitlines() if line.strip() and not entry.is_noise(line)]  # TF's load lines
    assert p.returncode == 143 and lines == ["terminated (SIGTERM); rerun the same command to resume"], err[-3000:]
    assert "FINISHED" not in out
    assert not [f for f in run_dir.rglob("*") if results.TMP_TAG in f.name]  # nothing half-written
    assert len(results.read_metrics(run_dir)) == 1  # epoch 1's row and checkpoint kept
    counted = []

    import keras

    class Count(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            counted.append(epoch)

    cfg = TrainConfig(model="mlp_1x64", epochs=4, verbose=0)
    train_run(cfg, DATA, run_dir, data=load(DATA, ARRAYS), callbacks=[Count()])  # the lock is free
    assert counted == [1, 2, 3]  # resumed after epoch 1
    ref = tmp_path / "ref"
    train_run(cfg, DATA, ref, data=load(DATA, ARRAYS))
    assert strip(results.read_metrics(run_dir)) == strip(results.read_metrics(ref))
    a, b = results.load_result(run_dir), results.load_result(ref)
    assert strip([a["final"]]) == strip([b["final"]]) and a["epochs"] == b["epochs"] == 4


# --------------------------------------------------------------------------- paths
def test_output_dir_through_a_dangling_or_looping_symlink(tmp_path):
    from rethinkgen_tf import cli
    (tmp_path / "dangling").symlink_to(tmp_path / "missing")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    for name in ("dangling", "loop"):
        for out in (tmp_path / name, tmp_path / name / "sub"):
            with pytest.raises(ValueError, match=f"{name} is a symbolic link to .*which does not exist"):
                cli.run_dir_of(str(out), "run")
            with pytest.raises(ValueError, match=f"--out=.*{name} is a symbolic link"):
                results.check_out(str(out / "summary.json"))
    (tmp_path / "good").symlink_to(tmp_path)
    assert cli.run_dir_of(str(tmp_path / "good"), "run") == tmp_path / "good" / "run"
    results.check_out(str(tmp_path / "good" / "summary.json"))


def test_output_path_that_is_not_utf8(tmp_path):
    from rethinkgen_tf import cli
    bad = os.fsdecode(os.fsencode(str(tmp_path)) + b"/caf\xe9")
    with pytest.raises(ValueError, match=r"^--output_dir/--run_name: the name .*caf\\xe9/run is not valid UTF-8"):
        cli.run_dir_of(bad, "run")
    with pytest.raises(ValueError, match=r"caf\\xe9 is not valid UTF-8") as e:
        cli.run_dir_of(str(tmp_path), os.fsdecode(b"caf\xe9"))
    str(e.value).encode("utf-8")  # printable: the undecodable byte is shown escaped
    with pytest.raises(ValueError, match=r"--out=.*not valid UTF-8"):
        results.check_out(bad + ".json")
    assert cli.run_dir_of(str(tmp_path / "café"), "run") == tmp_path / "café" / "run"


# --------------------------------------------------------------------------- the kernel experiment
def test_kernel_state_advice_names_no_training_flags(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    (state / kernel_distances.PROGRESS).write_text("{not json")
    with pytest.raises(results.StateError) as e:
        kernel_distances._load(state, kernel_distances.Distances(2, 1), 1, b"")
    assert "--overwrite" not in str(e.value) and f"delete {state} to start over" in str(e.value)
    (state / "config.json").write_text("[1]")
    with pytest.raises(results.StateError) as e:
        kernel_distances.check_state(state, {})
    assert "--overwrite" not in str(e.value) and "not a JSON object" in str(e.value)


def test_kernel_all_zero_features_are_one_line_not_a_division_by_zero(idx):
    with pytest.raises(ValueError, match=r"--conv_threshold=1e\+09 leaves .* lower it"):
        kernels.kernel_experiment(kernels.KernelConfig(dataset="mnist", data_dir=idx, n=24, test_n=4,
                                                       features="random_conv", conv_filters=8, conv_block=8,
                                                       conv_threshold=1e9, val_n=5), progress=None)


def test_kernel_says_when_n_is_capped(idx):
    said = []
    kernels.kernel_experiment(kernels.KernelConfig(dataset="mnist", data_dir=idx, n=10_000_000, test_n=4,
                                                   method="direct"), progress=said.append)
    assert "--n=10000000 is more than the 24 training images: using all 24" in said
    assert any(line.startswith("memory: about ") for line in said)


def test_kernel_memory_estimate():
    gib = 2**30
    e = kernels.memory_estimate(60000, 10000, 784)  # auto: mixed
    assert e["method"] == "mixed"
    assert 2 * 60000**2 * 2 < e["peak"] < 22 * gib  # distances and the float32 factor, 7.2 GB each
    d = kernels.memory_estimate(12000, 10000, 784)
    assert d["method"] == "direct" and d["peak"] > 18 * 12000**2


def test_kernel_refuses_more_than_the_machine_has_before_any_work(idx, monkeypatch):
    monkeypatch.setattr(kernels.experiment, "machine_memory", lambda: 2**30)  # the base alone fills it
    with pytest.raises(ValueError, match=r"n = 24 training and 10 test images need about 1\.0 GiB .* more than the "
                                         r"1\.0 GiB of this machine; reduce --n"):
        kernels.kernel_experiment(kernels.KernelConfig(dataset="mnist", data_dir=idx, n=10_000_000), progress=None)
    monkeypatch.setattr(kernels.experiment, "machine_memory", lambda: 16 * 2**30)
    import rethinkgen_tf.data.sources as sources

    def no_load(*a, **k):
        raise AssertionError("loaded the data before refusing")
    monkeypatch.setattr(sources, "load_subsets", no_load)
    # tensorflow-datasets: the sizes are known, so the check comes before the data
    with pytest.raises(ValueError, match=r"n = 60000 training and 10000 test images need about .* GiB"):
        kernels.kernel_experiment(kernels.KernelConfig(dataset="fashion_mnist", n=10_000_000), progress=None)
    with pytest.raises(ValueError, match=r"reduce --n, --test_n or --method=mixed"):
        kernels.kernel_experiment(kernels.KernelConfig(dataset="fashion_mnist", n=40000, method="direct"),
                                  progress=None)


# --------------------------------------------------------------------------- advice names real flags
ENTRY_POINTS = ["experiments.cifar", "experiments.mnist", "experiments.figure1", "experiments.table1",
                "experiments.implicit", "experiments.expressivity", "experiments.kernel", "experiments.imagenet",
                "experiments.dynamics", "benchmarks.ops", "benchmarks.train"]
# benchmarks.pipeline parses its arguments with argparse, not absl: not among them.

# absl's own: --help and its kin (defined by app.run) and --flagfile (parsed by FlagValues).
ABSL = {"help", "helpfull", "helpshort", "helpxml", "flagfile"}
SUITES = ("experiments.figure1", "experiments.table1", "experiments.implicit")
RUNS_OWN_CONFIGS = SUITES + ("experiments.imagenet", "benchmarks.train")
# Mentions the static call graph reaches but the entry point does not print, (module, flag): the
# entry points they hold for, and why.
ALLOWED = {
    # Checks of TrainConfig / DataConfig values that these commands set themselves (the grids,
    # imagenet's fixed crop=None and float32, benchmarks' configurations), never from a flag.
    ("rethinkgen_tf.data.config", "crop"): RUNS_OWN_CONFIGS,
    # The suites, imagenet and benchmarks train one process per point: never multi_worker.
    ("rethinkgen_tf.train", "strategy"): SUITES + ("benchmarks.train",),
    # --recipe is for models given by reference (module:function); imagenet trains Inception V3
    # and benchmarks.train the paper's models, never a reference.
    ("rethinkgen_tf.train", "recipe"): ("experiments.imagenet", "benchmarks.train"),
    ("rethinkgen_tf.user_model", "recipe"): ("experiments.imagenet", "benchmarks.train"),
    ("rethinkgen_tf.data.pipeline", "epochs"): RUNS_OWN_CONFIGS,  # imagenet checks --num_epochs first
    ("rethinkgen_tf.train", "mixed_precision"): RUNS_OWN_CONFIGS,
    ("rethinkgen_tf.train", "precision"): RUNS_OWN_CONFIGS,
    ("rethinkgen_tf.train", "run_name"): RUNS_OWN_CONFIGS,
    # select_subset's hint is for the first n examples of a class-ordered source: the suites ask
    # for balanced subsets, kernel and expressivity for random ones, ImageNet shards are shuffled.
    ("rethinkgen_tf.data.sources", "balanced"): RUNS_OWN_CONFIGS + ("experiments.expressivity",
                                                                     "experiments.kernel"),
    # results.RunLocked's text: kernel_distances.StateLock and imagenet replace it with their own;
    # a suite waits for a locked point; benchmarks.train trains in temporary directories.
    ("rethinkgen_tf.results", "output_dir"): ("experiments.kernel",) + RUNS_OWN_CONFIGS,
    ("rethinkgen_tf.results", "run_name"): ("experiments.kernel",) + RUNS_OWN_CONFIGS,
    # imagenet makes --train_dir itself before train.run would; benchmarks: temporary directories.
    ("rethinkgen_tf.train", "output_dir"): ("experiments.imagenet", "benchmarks.train"),
    ("rethinkgen_tf.train", "overwrite"): ("benchmarks.train",),
    # Advice about the training command that made a run directory, which dynamics and the
    # suites' figures read: "rerun with --overwrite", "it ran with --record_examples=none".
    ("rethinkgen_tf.results", "overwrite"): ("experiments.dynamics", "benchmarks.train"),
    ("rethinkgen_tf.results", "record_examples"): ("experiments.dynamics",) + RUNS_OWN_CONFIGS,
    ("rethinkgen_tf.plots", "record_examples"): ("experiments.dynamics", "experiments.figure1"),
    # benchmarks.train reads CIFAR-10 from --epoch_data_dir (sources' messages say --data_dir).
    ("rethinkgen_tf.data.sources", "data_dir"): ("benchmarks.train",),
    ("rethinkgen_tf.train", "data_dir"): ("benchmarks.train",),
    ("rethinkgen_tf.data.datasets", "data_dir"): ("benchmarks.train",),
    ("rethinkgen_tf.user_model", "data_dir"): ("benchmarks.train",),
    # load_npz's message is for the commands that read --dataset=numpy; mnist reads MNIST only.
    # imagenet reads TFRecord shards and benchmarks.train CIFAR-10, never a .npz.
    ("rethinkgen_tf.data.sources", "dataset"): ("experiments.mnist", "experiments.imagenet",
                                                "benchmarks.train"),
}

FLAG = re.compile(r"(?<![\w-])--([a-z][a-z0-9_]*)(?:=([a-z0-9_]+)\b)?")
PACKAGES = ("rethinkgen_tf", "experiments", "benchmarks")

DUMP = """
import json, runpy, sys
from absl import app, flags  # app defines --help and its kin
from rethinkgen_tf import entry
F = flags.FLAGS
out = {}
class Done(Exception):
    pass
def dump(*a, **k):
    raise Done()
entry.run = entry.run_with_flags = dump
base = set(F)
for name in sys.argv[1:]:
    sys.argv[1:] = []
    try:
        runpy.run_module(name, run_name="__main__", alter_sys=False)
    except Done:
        pass
    out[name] = {f: list(getattr(F[f].parser, "enum_values", None) or []) or None for f in F}
    for f in set(F) - base:
        delattr(F, f)
print("FLAGS" + json.dumps(out))
"""


def _file(mod):
    p = ROOT / (mod.replace(".", "/") + ".py")
    return p if p.exists() else (ROOT / mod.replace(".", "/") / "__init__.py")


class _Module:
    """A project module's functions (name -> node), its module-level code, and what its names
    refer to (alias -> module, or name -> (module, function)), statically."""

    def __init__(self, name):
        self.name = name
        self.tree = ast.parse(_file(name).read_text())
        self.defs, self.classes, self.aliases, self.top = {}, {}, {}, []
        pkg = name if _file(name).name == "__init__.py" else name.rpartition(".")[0]
        for node in self.tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                self.defs[node.name] = node
            elif isinstance(node, ast.ClassDef):
                self.classes[node.name] = node
            elif isinstance(node, (ast.Assign, ast.AnnAssign)) and all(
                    isinstance(t, ast.Name) for t in (node.targets if isinstance(node, ast.Assign) else [node.target])):
                for t in node.targets if isinstance(node, ast.Assign) else [node.target]:
                    self.defs[t.id] = node  # a constant: counts where it is used
            else:
                self.top.append(node)
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.split(".")[0] in PACKAGES:
                        self.aliases[a.asname or a.name.split(".")[0]] = a.asname and a.name or a.name.split(".")[0]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(pkg.split(".")[:len(pkg.split(".")) - node.level + 1] + ([base] if base else []))
                if base.split(".")[0] not in PACKAGES:
                    continue
                for a in node.names:
                    full = f"{base}.{a.name}"
                    self.aliases[a.asname or a.name] = full if _file(full).exists() else (base, a.name)


def _strings(node, skip):
    """String constants under node, but docstrings and flag definitions' help texts."""
    for sub in ast.walk(node):
        if isinstance(sub, ast.Constant) and isinstance(sub.value, str) and id(sub) not in skip:
            yield sub


def _skipped(tree):
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                skip.add(id(first.value))
        if isinstance(node, ast.Call):
            fn = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if fn.startswith("DEFINE"):  # help texts (they may point at another command's flags)
                skip.update(id(sub) for sub in ast.walk(node))
    return skip


def mentions(entry_point):
    """{(module, flag, value or None, line)}: each --flag (or --flag=value) in the strings of the
    code `python -m entry_point` can run, by a static call graph from its module-level code: the
    module-level code of every module imported (but its definitions), and each function, class (all
    its methods) or module-level constant that reached code names, through the import aliases."""
    mods, work, seen, found = {}, [(entry_point, None)], set(), set()

    def load(m):
        if m not in mods:
            mods[m] = _Module(m)
            mods[m].skip = _skipped(mods[m].tree)
            work.append((m, None))  # its module-level code runs on import
        return mods[m]

    def visit(m, nodes):
        mod = load(m)
        for node in nodes:
            for s in _strings(node, mod.skip):
                for f in FLAG.finditer(s.value):
                    found.add((m, f.group(1), f.group(2), s.lineno))
            for sub in ast.walk(node):
                if isinstance(sub, ast.Name):
                    target = mod.aliases.get(sub.id)
                    if sub.id in mod.defs or sub.id in mod.classes:
                        work.append((m, sub.id))
                    elif isinstance(target, tuple):
                        load(target[0])
                        work.append(target)
                    elif isinstance(target, str):
                        load(target)
                elif isinstance(sub, ast.Attribute):
                    chain, base = [sub.attr], sub.value
                    while isinstance(base, ast.Attribute):
                        chain.append(base.attr)
                        base = base.value
                    target = mod.aliases.get(base.id) if isinstance(base, ast.Name) else None
                    if isinstance(target, str):
                        prefix = target
                        for part in reversed(chain):
                            if _file(f"{prefix}.{part}").exists():
                                prefix = f"{prefix}.{part}"
                                load(prefix)
                            else:
                                load(prefix)
                                work.append((prefix, part))
                                break
                if isinstance(sub, (ast.Import, ast.ImportFrom)):  # runs the modules' own code (a
                    for alias in sub.names:                          # name imported counts where used)
                        t = mod.aliases.get(alias.asname or alias.name.split(".")[0])
                        if t is not None:
                            load(t if isinstance(t, str) else t[0])

    while work:
        m, name = work.pop()
        if (m, name) in seen:
            continue
        seen.add((m, name))
        mod = load(m)
        if name is None:
            visit(m, mod.top)
        elif name in mod.defs:
            visit(m, [mod.defs[name]])
        elif name in mod.classes:
            visit(m, [mod.classes[name]])
        elif isinstance(mod.aliases.get(name), tuple):  # a name a package re-exports
            load(mod.aliases[name][0])
            work.append(mod.aliases[name])
        elif isinstance(mod.aliases.get(name), str):
            load(mod.aliases[name])
    return found


@pytest.fixture(scope="module")
def defined_flags():
    p = run([PY, "-c", DUMP, *ENTRY_POINTS])
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout.split("FLAGS", 1)[1])


@pytest.mark.slow
@pytest.mark.parametrize("entry_point", ENTRY_POINTS)
def test_every_flag_an_entry_point_suggests_exists(entry_point, defined_flags):
    defined = defined_flags[entry_point]
    wrong = []
    for mod, flag, value, line in sorted(mentions(entry_point), key=str):
        if entry_point in ALLOWED.get((mod, flag), ()) or flag in ABSL:
            continue
        if flag not in defined and not (flag.startswith("no") and flag[2:] in defined):
            wrong.append(f"{mod}:{line}: --{flag} is not a flag of {entry_point}")
        elif value and defined.get(flag) and value not in defined[flag]:
            wrong.append(f"{mod}:{line}: --{flag}={value}: {entry_point} --{flag} takes {defined[flag]}")
    assert not wrong, "\n".join(wrong)


def test_the_flag_scan_finds_what_it_should():
    found = {(m, f) for m, f, _, _ in mentions("experiments.kernel")}
    assert ("rethinkgen_tf.kernels.experiment", "start_from") in found  # kernel_experiment's own checks
    assert ("rethinkgen_tf.kernels.config", "val_loo") in found  # KernelConfig's checks
    assert ("rethinkgen_tf.kernels.distances", "state_dir") in found  # StateLock's message, a class
    assert not any(m == "rethinkgen_tf.train" for m, _ in found)  # kernel runs no training
    found = {(m, f) for m, f, _, _ in mentions("experiments.cifar")}
    assert ("rethinkgen_tf.results", "overwrite") in found  # cli.main -> train.run -> results
    assert ("rethinkgen_tf.cli", "output_dir") in found


# --------------------------------------------------------------------------- entry points, as run
@pytest.fixture(scope="module")
def ran_entry_points(idx, tmp_path_factory):
    """The short entry-point cases, two processes at a time."""
    tmp = tmp_path_factory.mktemp("entry")
    (tmp / "dangling").symlink_to(tmp / "missing")
    cases = {
        "figure1-stray": ["experiments.figure1", "mlp_1x512"],
        "table1-stray": ["experiments.table1", "--plot_only", "extra"],
        "implicit-stray": ["experiments.implicit", "stray"],
        "expressivity-stray": ["experiments.expressivity", "stray"],
        "dynamics-stray": ["experiments.dynamics", "--run_dir=x", "stray"],
        "imagenet-stray": ["experiments.imagenet", f"--data_dir={tmp}", "stray"],
        "kernel-stray": ["experiments.kernel", "stray"],
        "mnist-lr-nan": ["experiments.mnist", "--learning_rate=nan", f"--data_dir={idx}"],
        "mnist-momentum-nan": ["experiments.mnist", "--momentum=nan", f"--data_dir={idx}"],
        "cifar-overfit-nan": ["experiments.cifar", "--overfit_threshold=nan"],
        "cifar-lr-inf": ["experiments.cifar", "--learning_rate=inf"],
        "imagenet-epochs-per-decay-inf": ["experiments.imagenet", f"--data_dir={tmp}", "--num_epochs_per_decay=inf"],
        "kernel-tol-nan": ["experiments.kernel", "--tol=nan"],
        "expressivity-knot-nan": ["experiments.expressivity", "--knot=nan"],
        "mnist-oom": ["experiments.mnist", f"--data_dir={idx}", "--model=mlp_1x100000000000", "--epochs=1",
                      f"--output_dir={tmp}/runs"],
        "mnist-dangling-output": ["experiments.mnist", f"--data_dir={idx}", f"--output_dir={tmp}/dangling"],
        "kernel-conv-threshold": ["experiments.kernel", "--dataset=mnist", f"--data_dir={idx}", "--n=24",
                                  "--test_n=4", "--features=random_conv", "--conv_filters=8", "--conv_block=8",
                                  "--conv_threshold=1e9", "--val_n=5"],
        "kernel-flagfile": ["experiments.kernel", f"--flagfile={tmp}/utf16.txt"],
    }
    (tmp / "utf16.txt").write_text("--n=6\n", encoding="utf-16")
    with ThreadPoolExecutor(2) as pool:
        futures = {k: pool.submit(module, *v, tmp=tmp) for k, v in cases.items()}
        return {k: f.result() for k, f in futures.items()}


@pytest.mark.slow
@pytest.mark.parametrize("case, says", [
    ("figure1-stray", "unexpected arguments ['mlp_1x512']"),
    ("table1-stray", "unexpected arguments ['extra']"),
    ("implicit-stray", "unexpected arguments ['stray']"),
    ("expressivity-stray", "unexpected arguments ['stray']"),
    ("dynamics-stray", "unexpected arguments ['stray']"),
    ("imagenet-stray", "unexpected arguments ['stray']"),
    ("kernel-stray", "unexpected arguments ['stray']"),
    ("mnist-lr-nan", "--learning_rate=nan: not a finite number"),
    ("mnist-momentum-nan", "--momentum=nan: not a finite number"),
    ("cifar-overfit-nan", "--overfit_threshold=nan: not a finite number"),
    ("cifar-lr-inf", "--learning_rate=inf: not a finite number"),
    ("imagenet-epochs-per-decay-inf", "--num_epochs_per_decay"),
    ("kernel-tol-nan", "--tol"),
    ("expressivity-knot-nan", "--knot"),
    ("mnist-oom", "error: out of memory ("),
    ("mnist-dangling-output", "is a symbolic link to"),
    ("kernel-conv-threshold", "--conv_threshold=1e+09 leaves"),
    ("kernel-flagfile", "is not UTF-8 text"),
])
def test_entry_point_edges_are_one_line(ran_entry_points, case, says):
    line = one_error_line(ran_entry_points[case])
    assert line.startswith("error: ") and says in line, line
    if case == "mnist-oom":
        assert "reduce --batch_size, --train_size, --test_size or the model's size" in line, line
