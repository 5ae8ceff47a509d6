"""Issue 27: the suites and multi-worker runs under a real Slurm (cluster/slurm/,
docs/cluster.md).

A one-node cluster on localhost (slurmctld, slurmd and munged from Debian's slurm-wlm
packages and munge, every file in a temporary directory) runs a tiny Figure 1 grid as a 2-task job array
(cluster/slurm/suite_array.sbatch) with the figure job (plot.sbatch) after it; one task gets
SIGTERM in the middle of a run, as before a time limit, and puts itself back in the queue.
Each point is trained once, every result equals the one-process run, and the figure is
drawn.  A 2-task `srun` job (multi_worker.sbatch) trains one run with --strategy=multi_worker
from Slurm's variables and matches the single-process run.  Skipped, with one line, where
the packages are missing (.ci/run installs them) or the daemons cannot start."""
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from tiny import TIMING

from rethinkgen_tf import grids, results, scales, suite

REPO = Path(__file__).resolve().parent.parent
DAEMONS = ("munged", "slurmctld", "slurmd")
COMMANDS = ("sbatch", "srun", "scontrol", "scancel", "sinfo", "squeue")
# The tiny grid: Figure 1 (b, c) of MLP 1x512, six p, 100 training images that can never all
# be fit (every image is in two classes), so every run trains exactly EPOCHS epochs.
EPOCHS = 15
SUITE = ["--models=mlp_1x512", "--parts=bc", "--scale=cpu", "--train_size=100",
         "--test_size=20", f"--max_epochs={EPOCHS}"]



def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(what, test, timeout, every=0.2):
    """Polls test() until it returns something true; its value, or None after timeout s."""
    end = time.time() + timeout
    while time.time() < end:
        value = test()
        if value:
            return value
        time.sleep(every)
    return None


class Slurm:
    """A one-node Slurm cluster on localhost, every file under `root`."""

    def __init__(self, root):
        self.root = root
        self.pids = []  # of the daemons started, to stop them
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith("SLURM_") and k != "TF_CONFIG"}
        self.env.update(SLURM_CONF=str(root / "slurm.conf"), RETHINKGEN_PYTHON=sys.executable,
                        TF_CPP_MIN_LOG_LEVEL="2")

    def start(self):
        """None once the node is idle, else why not (one line)."""
        r = self.root
        for d in ("munge", "state", "spool", "log"):
            (r / d).mkdir()
        (r / "munge").chmod(0o700)
        key = r / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        sock = r / "munge" / "sock"
        p = subprocess.run(["munged", "--force", f"--key-file={key}", f"--socket={sock}",
                            f"--pid-file={r / 'munge' / 'pid'}", f"--log-file={r / 'log' / 'munged.log'}",
                            f"--seed-file={r / 'munge' / 'seed'}"], capture_output=True, text=True)
        self._started(r / "munge" / "pid")
        if p.returncode != 0:
            return f"munged did not start: {(p.stderr.strip().splitlines() or ['?'])[-1]}"
        (r / "slurm.conf").write_text("\n".join([
            "ClusterName=rethinkgen", "SlurmctldHost=localhost", "SlurmUser=root",
            "SlurmdUser=root", "AuthType=auth/munge", "CredType=cred/munge",
            f"AuthInfo=socket={sock}", f"SlurmctldPort={_free_port()}",
            f"SlurmdPort={_free_port()}", f"StateSaveLocation={r / 'state'}",
            f"SlurmdSpoolDir={r / 'spool'}", f"SlurmctldPidFile={r / 'slurmctld.pid'}",
            f"SlurmdPidFile={r / 'slurmd.pid'}", f"SlurmctldLogFile={r / 'log' / 'slurmctld.log'}",
            f"SlurmdLogFile={r / 'log' / 'slurmd.log'}", "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none", "SelectType=select/cons_tres", "SelectTypeParameters=CR_Core",
            "JobAcctGatherType=jobacct_gather/none", "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/none", "MpiDefault=none", "SwitchType=switch/none",
            "MailProg=/bin/true", "ReturnToService=2", "KillWait=10", "MinJobAge=600",
            "SlurmdParameters=config_overrides",
            "NodeName=localhost CPUs=2 RealMemory=8000 State=UNKNOWN",
            "PartitionName=test Nodes=localhost Default=YES MaxTime=INFINITE State=UP", ""]))
        conf = str(r / "slurm.conf")
        for daemon, args in (("slurmctld", ["-f", conf]), ("slurmd", ["-f", conf, "-N", "localhost"])):
            p = subprocess.run([daemon, *args], env=self.env, capture_output=True, text=True)
            self._started(r / f"{daemon}.pid")
            if p.returncode != 0:
                return f"{daemon} did not start: {self._last(daemon, p.stderr)}"
        state = _wait("the node", lambda: self.run("sinfo", "-h", "-o", "%T", check=False)
                      .stdout.strip() in ("idle", "mixed", "allocated"), 60, every=1)
        if not state:
            return f"the node did not come up: {self._last('slurmd')}"
        return None

    def _started(self, pidfile):
        """Keeps the PID a daemon wrote (read at once: the files may go before the end)."""
        def pid():
            try:
                return int(pidfile.read_text().split()[0])
            except (OSError, ValueError, IndexError):
                return None
        found = _wait("pid", pid, 10, 0.1)
        if found:
            self.pids.append(found)

    def _last(self, daemon, stderr=""):
        log = self.root / "log" / f"{daemon}.log"
        lines = (log.read_text(errors="replace").splitlines() if log.exists() else []) + \
            stderr.strip().splitlines()
        errors = [x for x in lines if "error" in x.lower() and "pmix" not in x.lower()
                  and "MPI" not in x]  # slurmd's MPI plugins fail harmlessly without PMIx
        lines = errors or lines or ["no log"]
        return lines[-1].strip()

    def stop(self):
        """Cancels every job, waits (at most 30 s) until their processes are gone, then
        stops the daemons this cluster started."""
        self.run("scancel", "--user=root", check=False)
        _wait("no jobs", lambda: not self.run("squeue", "-h", check=False).stdout.strip(), 30, 1)
        pids = self.pids[::-1]
        for pid in pids:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for pid in pids:
            if not _wait("exit", lambda: not _alive(pid), 15):
                os.kill(pid, signal.SIGKILL)

    def log_tail(self, daemon, lines=15):
        """The last lines of a daemon's log (why a job failed before it printed anything)."""
        log = self.root / "log" / f"{daemon}.log"
        return "".join(log.read_text(errors="replace").splitlines(keepends=True)[-lines:]) \
            if log.exists() else "no log"

    def run(self, *args, check=True):
        p = subprocess.run(args, env=self.env, cwd=REPO, capture_output=True, text=True,
                           timeout=60)
        if check and p.returncode != 0:
            raise AssertionError(f"{' '.join(args)}: {p.stderr.strip()}")
        return p

    def sbatch(self, *args):
        return self.run("sbatch", "--parsable", *args).stdout.strip().split(";")[0]

    def jobs(self, job):
        """{job or array task id ("12" or "12_0"): (state, exit code)} of a job or array."""
        out = self.run("scontrol", "show", "job", "-o", job, check=False).stdout
        jobs = {}
        for line in out.splitlines():
            f = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
            task = f.get("ArrayTaskId")
            key = f"{f['ArrayJobId']}_{task}" if task and task.isdigit() else f.get("JobId")
            jobs[key] = (f.get("JobState"), f.get("ExitCode"))
        return jobs

    def wait_done(self, job, timeout):
        """The final {id: (state, exit code)} of a job (or array), or AssertionError."""
        done = _wait(job, lambda: (lambda j: j if j and all(
            s in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY")
            for s, _ in j.values()) else None)(self.jobs(job)), timeout, every=1)
        assert done, f"job {job} not done after {timeout}s: {self.jobs(job)}"
        return done


def _alive(pid):
    """Whether process pid runs (a zombie that nobody reaps does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    missing = [c for c in DAEMONS + COMMANDS if shutil.which(c) is None and
               not Path("/usr/sbin", c).exists()]
    if missing:
        pytest.skip(f"Slurm is not installed (no {', '.join(missing)}; .ci/run installs the "
                    "Debian packages slurmctld, slurmd, slurm-client and munge)")
    if os.geteuid() != 0:
        pytest.skip("a local Slurm cluster needs root (slurmd runs jobs as their users)")
    cluster = Slurm(tmp_path_factory.mktemp("slurm"))
    cluster.env["PATH"] = cluster.env.get("PATH", "") + ":/usr/sbin"
    try:
        why = cluster.start()
    except BaseException:
        cluster.stop()
        raise
    if why:
        cluster.stop()
        pytest.skip(f"the local Slurm cluster did not start: {why}")
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def clashing_cifar(tmp_path_factory):
    """10 classes x 10 training (2 test) 32x32 PNGs; each training image is in two classes,
    so no model fits the training set and a Figure 1 run trains all its epochs."""
    from PIL import Image
    root = tmp_path_factory.mktemp("clashing_cifar")
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (50, 32, 32, 3), np.uint8)
    for k in range(10):
        for split, n in (("train", 10), ("test", 2)):
            d = root / split / f"class{k}"
            d.mkdir(parents=True)
            for i in range(n):
                img = base[(5 * k + i) % 50] if split == "train" else base[(7 * k + i) % 50]
                Image.fromarray(img).save(d / f"{i:04d}.png")
    return root


def _record(row):
    """A metrics row without its timing columns, NaN as None (so that equal rows compare equal)."""
    return {k: None if v != v else v for k, v in row.items() if k not in TIMING}


def _rows(d):
    return [_record(r) for r in results.read_metrics(d)]


def _final(d):
    return _record(results.load_result(d)["final"])


@pytest.mark.slow
def test_grid_as_a_job_array_with_a_requeued_task_matches_one_process(
        slurm, clashing_cifar, tmp_path):
    t0 = time.time()
    out, logs = tmp_path / "figure1", tmp_path / "logs"
    logs.mkdir()
    flags = [*SUITE, f"--data_dir={clashing_cifar}", f"--output_dir={out}"]
    points = suite.with_precision(grids.figure1_points(
        scales.scale("cpu").capped(100, 20, EPOCHS), str(clashing_cifar),
        models=("mlp_1x512",), parts="bc"), "float32")
    dirs = [suite.run_dir(p, out) for p in points]
    array = slurm.sbatch("--array=0-1", "--cpus-per-task=1", "--mem=2G", "--time=10",
                         f"--output={logs}/task_%a.out", "cluster/slurm/suite_array.sbatch",
                         "experiments.figure1", *flags)
    plot = slurm.sbatch(f"--dependency=afterok:{array}", f"--output={logs}/plot.out",
                        "cluster/slurm/plot.sbatch", "experiments.figure1", *flags)

    # Task 0 trains points 0, 2, 4: SIGTERM to its training process (as --signal sends
    # before the time limit) once point 0 has checkpointed an epoch.
    first = dirs[0]
    meta = first / "backup" / "training_metadata.json"
    assert _wait("epoch 1", lambda: meta.exists() and results.load_result(first) is None,
                 120, 0.05), f"point 0 never started: {slurm.jobs(array)} {_tails(logs)}"
    t_kill = time.time()
    slurm.run("scancel", "--signal=TERM", f"{array}_0")
    assert _wait("requeued", lambda: slurm.jobs(f"{array}_0").get(f"{array}_0", ("",))[0]
                 == "PENDING", 60), f"not requeued: {slurm.jobs(array)} {_tails(logs)}"
    log0 = (logs / "task_0.out").read_text()
    assert "terminated (SIGTERM); rerun the same command to resume" in log0, log0[-3000:]
    assert f"slurm: requeueing {array}_0 to resume" in log0, log0[-3000:]
    # Stopped in the middle of point 0, its last finished epoch checkpointed, its lock free.
    assert results.load_result(first) is None
    done_epochs = results.read_json(meta)["epoch"]
    assert 1 <= done_epochs < EPOCHS
    assert (first / "backup" / results.read_json(meta)["weights"]).exists()
    assert len(results.read_metrics(first)) >= done_epochs
    with results.RunLock(first):
        pass
    # Requeued jobs wait (BeginTime) before they start again: start it now.
    begin = re.search(r"StartTime=(\S+)", slurm.run("scontrol", "show", "job", "-o",
                                                     f"{array}_0").stdout)
    wait = time.mktime(time.strptime(begin.group(1), "%Y-%m-%dT%H:%M:%S")) - time.time() \
        if begin and begin.group(1)[:1].isdigit() else float("nan")
    # slurmd refuses a credential made in the second its job was revoked (requeued) in
    # ("Job credential revoked", exit 1): Slurm's own delay avoids that; after ours, 2 s.
    time.sleep(2)
    slurm.run("scontrol", "update", f"JobId={array}_0", "StartTime=now")

    tasks = slurm.wait_done(array, 300)
    assert all(s == ("COMPLETED", "0:0") for s in tasks.values()), \
        (tasks, slurm.log_tail("slurmctld"), _tails(logs))
    assert slurm.wait_done(plot, 120)[plot] == ("COMPLETED", "0:0"), _tails(logs)
    t_done = time.time()

    # Each point trained once, by its own task (k mod 2), the interrupted one resumed.
    text = {i: (logs / f"task_{i}.out").read_text() for i in (0, 1)}
    for k, d in enumerate(dirs):
        done = [i for i in (0, 1) for _ in re.finditer(f"suite: done {d.name}:", text[i])]
        assert done == [k % 2], (d.name, done)
        starts = len(re.findall(f"suite: run \\d+/\\d+: {d.name} ", text[k % 2]))
        assert starts == (2 if k == 0 else 1), (d.name, starts)
        assert [r["epoch"] for r in results.read_metrics(d)] == list(range(1, EPOCHS + 1))
    assert text[0].count("(restart 1)") == 1
    assert all('"files"' not in t for t in text.values())  # --train_only: the tasks draw nothing
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == sorted(d.name for d in dirs)
    # The figure job drew the whole grid.
    assert os.path.getsize(out / "figure1.png") > 1000
    assert "not finished" not in (logs / "plot.out").read_text()

    # The same grid in one process: identical records.
    ref = tmp_path / "ref"
    suite.run_grid(points, ref, data_cache={})
    for d in dirs:
        assert _rows(d) == _rows(ref / d.name), d.name
        assert _final(d) == _final(ref / d.name), d.name
    print(f"slurm array: to the kill {t_kill - t0:.0f}s, to the figure {t_done - t0:.0f}s, "
          f"one-process reference {time.time() - t_done:.0f}s; point 0 stopped after "
          f"{done_epochs} of {EPOCHS} epochs; Slurm would have restarted it {wait:.0f}s on")


@pytest.mark.slow
def test_multi_worker_under_srun_matches_one_process(slurm, clashing_cifar, tmp_path):
    t0 = time.time()
    run = [f"--data_dir={clashing_cifar}", "--model=mlp_1x64", "--epochs=3", "--batch_size=20",
           f"--output_dir={tmp_path}"]
    job = slurm.sbatch("--nodes=1", "--ntasks=2", "--ntasks-per-node=2", "--cpus-per-task=1",
                       "--mem=2G", "--time=10", f"--output={tmp_path}/mw.out",
                       "cluster/slurm/multi_worker.sbatch", *run, "--run_name=mw")
    single = subprocess.run([sys.executable, "-m", "experiments.cifar", *run, "--run_name=one"],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr[-3000:]
    state = slurm.wait_done(job, 300)[job]
    log = (tmp_path / "mw.out").read_text()
    assert state == ("COMPLETED", "0:0"), log[-3000:]
    chief, worker = results.load_result(tmp_path / "mw"), results.load_result(tmp_path / "mw" / "worker1")
    assert chief["num_replicas"] == 2 and worker is not None, log[-3000:]
    ref = results.read_metrics(tmp_path / "one")[-1]
    for k in ("train_eval_acc", "train_eval_acc_orig", "test_acc", "step"):
        assert chief["final"][k] == worker["final"][k], k
        assert chief["final"][k] == pytest.approx(ref[k], rel=1e-4, abs=1e-4), k
    print(f"slurm multi-worker: {time.time() - t0:.0f}s")


def test_cluster_from_slurm_variables(monkeypatch):
    """Under srun: the step's tasks, one port each from the job's base; TF_CONFIG wins; no
    step (a batch script alone, or no Slurm): None, TensorFlow's own TF_CONFIG or one worker."""
    from rethinkgen_tf import train
    for k in [k for k in os.environ if k.startswith("SLURM_")] + ["TF_CONFIG"]:
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("SLURM_JOB_ID", "1234")
    assert train.cluster_resolver() is None
    monkeypatch.setenv("SLURM_PROCID", "2")
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "3")
    monkeypatch.setenv("SLURM_STEP_NODELIST", "gpu[07-08]")
    monkeypatch.setenv("SLURM_STEP_TASKS_PER_NODE", "2,1")
    r = train.cluster_resolver()
    port = train.SLURM_PORT_BASE + 50 * 234
    assert r.cluster_spec().as_dict() == {
        "worker": [f"gpu07:{port}", f"gpu07:{port + 1}", f"gpu08:{port}"]}
    assert (r.task_type, r.task_id) == ("worker", 2)
    gpus = len(train.tf.config.list_physical_devices("GPU"))  # its own, not one per task
    assert r.num_accelerators() == ({"GPU": gpus} if gpus else {})
    monkeypatch.setenv("SLURM_STEP_TASKS_PER_NODE", "2")  # 2 tasks on 2 nodes but 3 in the step
    with pytest.raises(ValueError, match="^--strategy=multi_worker: cannot read the cluster"):
        train.cluster_resolver()
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 0}}')
    assert train.cluster_resolver() is None


def _tails(logs):
    return {f.name: f.read_text(errors="replace")[-1500:] for f in sorted(Path(logs).glob("*.out"))}
