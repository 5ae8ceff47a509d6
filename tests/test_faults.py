"""Fault injection: concurrent processes on one run directory, kills at every
phase of a run, a full disk, damaged state files, Ctrl-C, bad input.

Each test asserts the exact outcome: one line on stderr, the exit code, and
results bit-identical (timing columns aside) to an undisturbed run.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tiny import ARRAYS, DATA, SETUP, strip, write_class_folders

from rethinkgen_tf import results
from rethinkgen_tf.data import load
from rethinkgen_tf.train import TrainConfig, run

pytestmark = pytest.mark.slow  # subprocesses and real training: make test-fast skips these

ROOT = Path(__file__).resolve().parents[1]

CFG = TrainConfig(model="mlp_1x64", epochs=4, verbose=0)


def assert_same_run(a, b):
    """Two run directories hold the same finished run (timings aside)."""
    assert strip(results.read_metrics(a)) == strip(results.read_metrics(b))
    ra, rb = results.load_result(a), results.load_result(b)
    assert strip([ra["final"]]) == strip([rb["final"]])
    for k in ("epochs", "steps", "overfit_epoch", "best_test_acc", "config"):
        assert ra[k] == rb[k], k
    import h5py
    with h5py.File(Path(a) / "model.weights.h5") as fa, h5py.File(Path(b) / "model.weights.h5") as fb:
        def arrays(f):
            out = {}
            f.visititems(lambda n, o: out.__setitem__(n, o[()]) if hasattr(o, "shape") else None)
            return out
        wa, wb = arrays(fa), arrays(fb)
        assert wa.keys() == wb.keys() and wa
        for k in wa:
            np.testing.assert_array_equal(wa[k], wb[k], err_msg=k)


def assert_clean(run_dir):
    """A finished run directory holds no temporary files and no checkpoint."""
    names = [p.name for p in Path(run_dir).rglob("*")]
    assert not [n for n in names if results.TMP_TAG in n], names
    assert not (Path(run_dir) / "backup").exists()
    assert not (Path(run_dir) / "result.old.json").exists()


def one_line(p, code=1):
    lines = [l for l in p.stderr.splitlines() if l.strip()]
    assert p.returncode == code, p.stderr
    assert "Traceback" not in p.stderr, p.stderr
    errs = [l for l in lines if l.startswith(("error:", "interrupted"))]
    assert len(errs) == 1, p.stderr
    return errs[0]


@pytest.fixture(scope="module")
def ref(tmp_path_factory):
    """An uninterrupted run of CFG on DATA."""
    path = tmp_path_factory.mktemp("ref")
    run(CFG, DATA, path, data=load(DATA, ARRAYS))
    return path


def python(code, *args, env=None, **kw):
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def finish(p, timeout=300):
    out, err = p.communicate(timeout=timeout)
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)


# A run of CFG through the CLI's error handling, with fault hooks:
#   argv: run_dir phase [arg]; phase picks where the process kills itself or fails.
DRIVER = SETUP + """
import errno, os, signal, sys, threading, time, keras
from pathlib import Path
from rethinkgen_tf import entry, results, train
from rethinkgen_tf.train import TrainConfig, run
run_dir, phase = sys.argv[1], sys.argv[2]
arg = sys.argv[3] if len(sys.argv) > 3 else None
kill = lambda: os.kill(os.getpid(), signal.SIGKILL)

def patch(module, name, before=None, after=None, when=lambda *a, **k: True):
    original = getattr(module, name)
    def wrapped(*a, **k):
        if before and when(*a, **k): before()
        out = original(*a, **k)
        if after and when(*a, **k): after()
        return out
    setattr(module, name, wrapped)

def named(n):
    return lambda path, *a, **k: Path(path).name == n

def enospc():
    raise OSError(errno.ENOSPC, "No space left on device")

cbs = []
class At(keras.callbacks.Callback):  # act at optimizer step `arg`
    def __init__(self, act): super().__init__(); self.act = act
    def on_train_batch_end(self, batch, logs=None):
        if self.model.optimizer.iterations.numpy() == int(arg): self.act()
class Wait(keras.callbacks.Callback):  # at step `arg`: say so, then wait for run_dir/go
    def on_train_batch_end(self, batch, logs=None):
        if self.model.optimizer.iterations.numpy() == int(arg):
            print("WAITING", flush=True)
            while not (Path(run_dir) / "go").exists(): time.sleep(0.05)

if phase == "mid_epoch": cbs.append(At(kill))
elif phase == "wait": cbs.append(Wait())
elif phase == "sigint":  # Ctrl-C in a terminal.  (A job started with `&` from a script
    # inherits SIGINT ignored, and Python keeps it so: restore what a terminal gives.)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    cbs.append(At(lambda: os.kill(os.getpid(), signal.SIGINT)))
elif phase == "after_metrics":  # epoch `arg`'s row written, its checkpoint not
    patch(results, "write_metrics", after=kill, when=lambda d, rows: len(rows) == int(arg))
elif phase == "after_checkpoint":  # epoch `arg` checkpointed, next epoch not begun
    patch(results, "write_json", after=kill, when=lambda p, o: Path(p).name ==
          "training_metadata.json" and o["epoch"] == int(arg))
elif phase == "before_weights":
    patch(train, "_save_weights", before=kill, when=lambda model, path: Path(path).name ==
          "model.weights.h5")  # the final weights, not an epoch checkpoint
elif phase == "before_result":
    patch(results, "write_json", before=kill, when=named("result.json"))
elif phase == "mid_result":  # the temporary file written, not yet renamed
    patch(os, "replace", before=kill, when=lambda a, b: Path(b).name == "result.json")
elif phase == "before_tidy":
    patch(train, "_tidy", before=kill)
elif phase.startswith("enospc_"):  # a full disk at one write site, once
    site = phase[len("enospc_"):]
    hit = []
    def once(module, name, when):
        original = getattr(module, name)
        def wrapped(*a, **k):
            if not hit and when(*a, **k):
                hit.append(1); enospc()
            return original(*a, **k)
        setattr(module, name, wrapped)
    if site == "metrics":
        once(results, "atomic_write", lambda p, t: Path(p).name == "metrics.csv"
             and t.count(chr(10)) == 3)
    elif site == "checkpoint":
        once(keras.Model, "save_weights", lambda self, p, *a, **k: "epoch2" in str(p))
    elif site == "config":
        once(results, "atomic_write", lambda p, t: Path(p).name == "config.json")
    elif site == "result":
        once(results, "atomic_write", lambda p, t: Path(p).name == "result.json")
    elif site == "weights":
        once(keras.Model, "save_weights", lambda self, p, *a, **k: "model.weights" in str(p))
overwrite = os.environ.get("OVERWRITE") == "1"
epochs = int(os.environ.get("EPOCHS", "4"))
with entry.errors():
    r = run(TrainConfig(model="mlp_1x64", epochs=epochs, verbose=0, overwrite=overwrite),
            DATA, run_dir, data=load(DATA, ARRAYS), callbacks=cbs)
print("RESULT", r["epochs"], flush=True)
"""


class Epochs:
    """Counts the epochs a resumed run trains."""

    def __new__(cls):
        import keras

        class Counter(keras.callbacks.Callback):
            n = 0

            def on_epoch_begin(self, epoch, logs=None):
                Counter.n += 1

        return Counter()


def resume(run_dir, **kw):
    counter = Epochs()
    run(TrainConfig(model="mlp_1x64", epochs=4, verbose=0, **kw), DATA, run_dir,
        data=load(DATA, ARRAYS), callbacks=[counter])
    return counter.n


# ---------------------------------------------------------------- kills


@pytest.mark.parametrize("phase, arg, retrained", [
    ("mid_epoch", 12, 3),        # killed in epoch 2: epochs 2-4 again
    ("after_metrics", 2, 3),     # epoch 2's row written, checkpoint not: epoch 2 again
    ("after_checkpoint", 2, 2),  # epoch 2 checkpointed: epochs 3-4
    ("before_weights", None, 0),  # trained: nothing retrained
    ("before_result", None, 0),
    ("mid_result", None, 0),
    ("before_tidy", None, 0),
])
def test_kill_at_each_phase_resumes_identically(ref, tmp_path, phase, arg, retrained):
    p = finish(python(DRIVER, tmp_path, phase, *([arg] if arg else [])))
    assert p.returncode == -9, p.stderr
    assert resume(tmp_path) == retrained
    assert_same_run(tmp_path, ref)
    assert_clean(tmp_path)


def test_overwrite_keeps_the_old_result_until_the_new_one_is_written(ref, tmp_path):
    shutil.copytree(ref, tmp_path, dirs_exist_ok=True)
    old = results.load_result(tmp_path)
    # --overwrite with another config, killed in its second epoch: the old result survives
    p = finish(python(DRIVER, tmp_path, "mid_epoch", 12, env={"OVERWRITE": "1", "EPOCHS": "3"}))
    assert p.returncode == -9, p.stderr
    assert results.load_result(tmp_path) is None
    assert results.read_json(tmp_path / "result.old.json") == old
    # rerun: resumes the new run (epoch 2 on), then drops the old result
    counter = Epochs()
    r = run(TrainConfig(model="mlp_1x64", epochs=3, verbose=0, overwrite=True), DATA, tmp_path,
            data=load(DATA, ARRAYS), callbacks=[counter])
    assert counter.n == 2 and r["epochs"] == 3
    assert strip(results.read_metrics(tmp_path)) == strip(results.read_metrics(ref)[:3])
    assert_clean(tmp_path)


# ---------------------------------------------------------------- full disk


@pytest.mark.parametrize("site", ["config", "metrics", "checkpoint", "weights", "result"])
def test_disk_full_is_one_line_and_resumes_identically(ref, tmp_path, site):
    p = finish(python(DRIVER, tmp_path, f"enospc_{site}"))
    line = one_line(p)
    assert line.startswith("error: the disk is full") and "rerun the same command" in line
    resume(tmp_path)
    assert_same_run(tmp_path, ref)
    assert_clean(tmp_path)


def _tmpfs(path, size):
    path.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                       capture_output=True)
    return r.returncode == 0


def test_disk_full_on_a_real_small_filesystem(ref, tmp_path):
    """A 400 KB tmpfs fills during the run (CLI, no injection); after it is
    enlarged, the same command finishes with the undisturbed result."""
    mnt = tmp_path / "mnt"
    if not _tmpfs(mnt, "400k"):
        pytest.skip("cannot mount a tmpfs here (not root); the injected ENOSPC tests cover it")
    try:
        cfg = {"EPOCHS": "4"}
        p = finish(python(DRIVER, mnt / "run", "none", env=cfg))
        line = one_line(p)
        assert line.startswith("error: the disk is full"), line
        subprocess.run(["mount", "-o", "remount,size=20m", str(mnt)], check=True)
        p = finish(python(DRIVER, mnt / "run", "none", env=cfg))
        assert p.returncode == 0, p.stderr
        assert_same_run(mnt / "run", ref)
        assert_clean(mnt / "run")
    finally:
        subprocess.run(["umount", "-l", str(mnt)])


# ---------------------------------------------------------------- Ctrl-C


def test_ctrl_c_is_one_line_and_tensorboard_has_no_duplicate_steps(ref, tmp_path):
    p = finish(python(DRIVER, tmp_path, "sigint", 20))  # in epoch 3
    assert one_line(p, 130) == "interrupted; rerun the same command to resume"
    resume(tmp_path)
    assert_same_run(tmp_path, ref)
    import tensorflow as tf
    steps = {}
    for f in (tmp_path / "tb").iterdir():
        for e in tf.compat.v1.train.summary_iterator(str(f)):
            for v in e.summary.value:
                steps.setdefault(v.tag, []).append(e.step)
    assert steps["train_eval_acc"] == [8, 16, 24, 32]


# ---------------------------------------------------------------- concurrency


HOLD = """
import sys, time
from rethinkgen_tf import results
with results.RunLock(sys.argv[1]):
    print("LOCKED", flush=True)
    sys.stdin.readline()
"""


def test_a_locked_run_directory_refuses_a_second_process(ref, tmp_path):
    holder = python(HOLD, tmp_path, stdin=subprocess.PIPE)
    assert holder.stdout.readline().strip() == "LOCKED"
    p = finish(python(DRIVER, tmp_path, "none"))
    line = one_line(p)
    assert f"in use by process {holder.pid}" in line and "wait for it" in line
    holder.communicate("\n", timeout=60)
    assert not (tmp_path / "metrics.csv").exists()  # the second process wrote nothing
    # released (and kill -9 releases too): the run now goes through
    holder = python(HOLD, tmp_path, stdin=subprocess.PIPE)
    assert holder.stdout.readline().strip() == "LOCKED"
    holder.kill()
    holder.wait()
    resume(tmp_path)
    assert_same_run(tmp_path, ref)


def test_a_second_process_on_a_training_run_is_refused_and_the_first_finishes(ref, tmp_path):
    first = python(DRIVER, tmp_path, "wait", 12)
    assert first.stdout.readline().strip() == "WAITING"
    second = finish(python(DRIVER, tmp_path, "none"))
    assert f"in use by process {first.pid}" in one_line(second)
    (tmp_path / "go").touch()
    assert finish(first).returncode == 0
    (tmp_path / "go").unlink()
    assert_same_run(tmp_path, ref)
    assert_clean(tmp_path)


SUITE = SETUP + """
import sys
from rethinkgen_tf import suite
from rethinkgen_tf.train import TrainConfig
points = [suite.point(TrainConfig(model="mlp_1x64", epochs=e, verbose=0, seed=s), DATA, e=e, s=s)
          for e in (2, 3) for s in (0, 1)]
import rethinkgen_tf.data as rd
real = rd.load
rd.load = lambda config, arrays=None: real(config, ARRAYS)
out = suite.run_grid(points, sys.argv[1])
print("RESULTS", [r["epochs"] for _, r in out], flush=True)
"""


def test_two_processes_share_a_suite_grid(tmp_path):
    alone = finish(python(SUITE, tmp_path / "alone"))
    assert alone.returncode == 0, alone.stderr
    procs = [python(SUITE, tmp_path / "shared") for _ in range(2)]
    outs = [finish(p) for p in procs]
    for o in outs:
        assert o.returncode == 0, o.stderr
        assert "RESULTS [2, 2, 3, 3]" in o.stdout  # each process gets every result
    trained = sum(o.stdout.count("suite: done") for o in outs)
    assert trained == 4  # each point trained once
    for d in (tmp_path / "alone").iterdir():
        assert_same_run(d, tmp_path / "shared" / d.name)


# ---------------------------------------------------------------- the CLI


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """A tiny CIFAR-10 in class folders: 10 classes x (3 train, 2 test) 32x32 PNGs."""
    return write_class_folders(tmp_path_factory.mktemp("folders"))


def cli(module, *args, timeout=300):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def cifar(folders, out, *args):
    return cli("experiments.cifar", f"--data_dir={folders}", "--model=mlp_1x32", "--epochs=2",
               "--batch_size=8", "--randomize=labels", f"--output_dir={out}", *args)


@pytest.mark.parametrize("args, says", [
    (["--seed=-1"], "--seed"), ([f"--seed={2**63}"], "--seed"), ([f"--seed={2**32}"], "--seed"),
    ([f"--data_seed={2**63}"], "--data_seed"), (["--data_seed=-1"], "--data_seed"),
    (["--shuffle_seed=-5"], "--shuffle_seed"),
    (["--model=mlp_1x0"], "unknown model 'mlp_1x0'"), (["--model=mlp_0x8"], "unknown model"),
    (["--epochs=0"], "--epochs"), (["--run_name=../escape"], "--run_name"),
    (["--run_name=a/b"], "--run_name"), (["--run_name=.."], "--run_name"),
])
def test_bad_flags_are_one_line_before_the_data(tmp_path, args, says):
    # --data_dir does not exist: these checks come before the data is read
    p = cli("experiments.cifar", f"--data_dir={tmp_path / 'nothing'}",
            f"--output_dir={tmp_path / 'runs'}", *args)
    line = one_line(p)
    assert line.startswith("error:") and says in line, line
    assert not (tmp_path / "runs").exists()


def test_output_dir_that_is_a_file_or_under_one(tmp_path):
    (tmp_path / "f").write_text("x")
    for out in (tmp_path / "f", tmp_path / "f" / "sub"):
        line = one_line(cli("experiments.cifar", f"--output_dir={out}",
                            f"--data_dir={tmp_path}"))
        assert "--output_dir" in line and "is a file" in line, line
    # a directory even root cannot create (procfs): one line before any data is read
    line = one_line(cli("experiments.cifar", "--output_dir=/proc/rethinkgen_runs",
                        f"--data_dir={tmp_path / 'nothing'}"))
    assert "cannot create the run directory" in line and "--output_dir" in line, line


def test_finished_run_with_another_config_is_refused(folders, tmp_path):
    assert cifar(folders, tmp_path).returncode == 0
    run_dir = tmp_path / "cifar10_mlp_1x32_labels_s0"
    result = results.load_result(run_dir)
    other = tmp_path / "copy"
    shutil.copytree(folders, other)
    for args, says in ((["--epochs=3"], "epochs 2 -> 3"),
                       (["--learning_rate=0.5"], "learning_rate 0.01 -> 0.5"),
                       ([f"--data_dir={other}"], "data_dir")):
        p = cifar(folders, tmp_path, *args)
        line = one_line(p)
        assert "holds a finished run with a different config" in line and says in line, line
        assert "--overwrite" in line
    assert results.load_result(run_dir) == result
    p = cifar(folders, tmp_path)  # the same config: its result, exit 0
    assert p.returncode == 0 and "finished already" in p.stderr


@pytest.mark.parametrize("damage, says", [
    ("config.json", "config.json is damaged"),
    ("result.json", "result.json is damaged"),
    ("metrics.csv", "metrics.csv is damaged"),
    ("metrics.csv:short", "metrics.csv has 1 rows but the checkpoint is at epoch 2"),
    ("backup/weights", ".weights.h5 is damaged"),
    ("backup/training_metadata.json", "training_metadata.json is damaged"),
])
def test_damaged_state_is_one_line_naming_the_file(ref, tmp_path, damage, says):
    run_dir = tmp_path / "run"
    # an unfinished run (killed after epoch 2's checkpoint) or a finished one
    if damage in ("result.json",):
        shutil.copytree(ref, run_dir)
    else:
        p = finish(python(DRIVER, run_dir, "after_checkpoint", 2))
        assert p.returncode == -9
    if damage == "backup/weights":
        meta = results.read_json(run_dir / "backup" / "training_metadata.json")
        w = run_dir / "backup" / meta["weights"]
        w.write_bytes(w.read_bytes()[:1000])
    elif damage == "metrics.csv:short":
        lines = (run_dir / "metrics.csv").read_text().splitlines()
        (run_dir / "metrics.csv").write_text("\n".join(lines[:2]) + "\n")
    elif damage == "metrics.csv":
        (run_dir / "metrics.csv").write_text("epoch,step\n1,8\ngarbage,\x00\x01\n")
    else:
        (run_dir / damage).write_text("{not json")
    p = finish(python(DRIVER, run_dir, "none"))
    line = one_line(p)
    assert says in line and ("--overwrite" in line or "delete" in line), line


SUITE_CLI = ["experiments.table1", "--models=mlp_1x512"]


def test_suite_bad_input(tmp_path):
    (tmp_path / "file").write_text("x")
    cases = [
        (["--merge_from=" + str(tmp_path / "missing"), "--plot_only"], "does not exist"),
        (["--merge_from=" + str(tmp_path / "file"), "--plot_only"], "is a file"),
        (["--models=mlp_1x512,nosuch", "--plot_only"], "nosuch"),
        (["--plot_only", f"--output_dir={tmp_path / 'empty'}"], "no finished runs"),
    ]
    for args, says in cases:
        p = cli(*SUITE_CLI, *args)
        line = one_line(p)
        assert says in line, line
    p = cli("experiments.figure1", "--models=nosuch", "--parts=b", "--plot_only")
    assert "unknown model 'nosuch'" in one_line(p)


def test_merge_from_a_damaged_result_is_one_line(ref, tmp_path):
    shard = tmp_path / "shard"
    shutil.copytree(ref, shard / "somerun")
    (shard / "somerun" / "result.json").write_text("garbage")
    p = cli(*SUITE_CLI, f"--merge_from={shard}", f"--output_dir={tmp_path / 'out'}", "--plot_only")
    # the damaged run is skipped with one line naming it; nothing is left to draw
    assert "no finished runs" in one_line(p)
    skipped = [line for line in p.stdout.splitlines() if "skipped" in line]
    assert len(skipped) == 1 and "result.json is damaged" in skipped[0] and "somerun" in skipped[0]


def test_class_folders_that_do_not_match_the_dataset(tmp_path, folders):
    few = tmp_path / "few"
    for split in ("train", "test"):
        for k in range(3):
            shutil.copytree(folders / split / f"class{k}", few / split / f"class{k}")
    line = one_line(cifar(few, tmp_path / "runs"))
    assert "3" in line and "10" in line, line
    (tmp_path / "afile").write_text("x")
    line = one_line(cifar(tmp_path / "afile", tmp_path / "runs"))
    assert "file" in line and "does not exist" not in line, line


def test_a_run_that_never_started_takes_another_config(folders, tmp_path):
    """Data that failed to load leaves no config behind to refuse the next try."""
    line = one_line(cifar(tmp_path / "missing", tmp_path))
    assert "does not exist" in line
    p = cifar(folders, tmp_path)
    assert p.returncode == 0, p.stderr
