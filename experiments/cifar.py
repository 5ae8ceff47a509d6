"""The randomization test on CIFAR-10 (Zhang et al. 2017, Table 1 and Figure 1).

    python -m experiments.cifar --model=inception --corrupt=0.5
    python -m experiments.cifar --model=mlp_1x512 --randomize=labels --data_dir=~/cifar10
    python -m experiments.cifar --model=mynets.tiny:build --recipe=mlp \
        --dataset=folder --data_dir=MYDATA           # your model, your data

Writes one run directory under --output_dir (see docs/training.md).
"""
from absl import flags as absl_flags

from rethinkgen_tf import cli, entry

if __name__ == "__main__":
    cli.define(datasets=("cifar10", "folder", "numpy"), model="inception")
    absl_flags.adopt_module_key_flags(cli)  # list them in --help
    entry.run(cli.main)
