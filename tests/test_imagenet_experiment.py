"""experiments.imagenet end to end on generated shards: Inception V3, RMSProp,
random labels, top-1/top-5, --max_steps, resumable run directory."""
import json
import os
import subprocess
import sys

import pytest
from imagenet_shards import write_shards

pytestmark = pytest.mark.slow  # subprocesses and real training: make test-fast skips these

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_imagenet_end_to_end(tmp_path):
    shards = {"train-00000-of-00002": 5, "train-00001-of-00002": 4, "validation-00000-of-00001": 4}
    write_shards(tmp_path, shards, num_classes=6, size=(80, 100))
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "experiments.imagenet", f"--data_dir={tmp_path}",
           f"--train_dir={out}", "--image_size=75", "--num_classes=6", "--batch_size=4",
           "--max_steps=3", "--train_eval_size=8", "--randomize=labels", "--noaugment"]
    env = dict(os.environ, RETHINKGEN_DATA_CACHE=str(tmp_path / "cache"))
    r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads((out / "result.json").read_text())
    assert res["steps"] == 3 and res["model"] == "inception_v3" and res["randomize"] == "labels"
    cfg = res["config"]["train"]
    assert cfg["optimizer"] == "rmsprop" and cfg["rmsprop_epsilon"] == 1.0
    assert cfg["learning_rate"] == 0.045 and cfg["lr_decay_epochs"] == 2.0
    final = res["final"]
    assert 0.0 <= final["test_acc"] <= final["test_top5"] <= 1.0
    # A finished run is not redone.
    r2 = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert r2.returncode == 0 and "finished already" in r2.stderr + r2.stdout
    bad = subprocess.run(cmd[:3] + ["--initial_learning_rate=-1"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
