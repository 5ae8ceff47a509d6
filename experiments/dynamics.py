"""Per-example training dynamics of finished (or running) runs, from their examples.npz
alone (no training): (1) re-evaluated training accuracy of clean vs corrupted examples per
epoch, and the corrupted ones' accuracy on their original labels; (2) the distribution of
first-fit epochs, clean vs corrupted; (3) with --record_examples=full records, the data map
(mean confidence in the training label vs its variability across epochs).

    python -m experiments.dynamics --run_dir=runs/cifar10_mlp_1x512_corrupt0.5_s0
    python -m experiments.dynamics --run_dir=DIR1 --run_dir=DIR2 --out=compare

One row per run; writes OUT.png and OUT.pdf (default: DIR/dynamics for one run,
./dynamics for several) and prints the key numbers as JSON.
"""
import json
from pathlib import Path

from absl import flags

from rethinkgen_tf import entry, plots

flags.DEFINE_multi_string("run_dir", [], "Run directory holding examples.npz (or the path "
                          "of an examples.npz); repeat for several runs.")
flags.DEFINE_string("out", None, "Output path without extension (default: RUN_DIR/dynamics "
                    "for one run, ./dynamics for several).")
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise ValueError(f"unexpected arguments {argv[1:]}")
    if not FLAGS.run_dir:
        raise ValueError("pass --run_dir=DIR (a run directory holding examples.npz)")
    dirs = []
    for d in FLAGS.run_dir:
        p = Path(d).expanduser()
        if p.is_file() and p.name.endswith(".npz"):
            p = p.parent
        if not p.is_dir():
            raise ValueError(f"--run_dir={d} is not a directory")
        dirs.append(p)
    out = FLAGS.out or str(dirs[0] / "dynamics" if len(dirs) == 1 else "dynamics")
    numbers = plots.dynamics(dirs, out)
    print(json.dumps(numbers, indent=1, default=str))


if __name__ == "__main__":
    entry.run(main)
