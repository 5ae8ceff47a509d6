"""Figure 1 of the paper: (a) training loss under the five randomizations, (b) time
to overfit vs label corruption, (c) test error vs label corruption.

    python -m experiments.figure1 --scale=cpu --data_dir=/path/to/cifar10
    python -m experiments.figure1 --scale=paper --shard=0/4   # one of 4 machines
    python -m experiments.figure1 --plot_only                 # redraw from results
    python -m experiments.figure1 --models=mlp_1x512 --loss_model=mlp_1x512 \
        --train_size=100 --test_size=100 --max_epochs=2 --data_dir=...   # a smoke test
    python -m experiments.figure1 --models=mynets.tiny:build --recipe=mlp \
        --dataset=folder --data_dir=MYDATA                    # your model, your data

Writes figure1.png/.pdf and one run directory per point under --output_dir, and next
to Figure 1 figure1_dynamics.png/.pdf: for each (b, c) run with 0 < p < 1, the
re-evaluated training accuracy of its clean and corrupted examples per epoch, and of the
corrupted ones on their original labels, from the runs' examples.npz
(python -m experiments.dynamics draws more of those records).
"""
from absl import flags

from rethinkgen_tf import entry, grids, plots, suite, user_model

suite.define_flags("runs/figure1")
flags.adopt_module_key_flags(suite)
flags.DEFINE_list("models", list(grids.FIG1_MODELS), "Models of (b) and (c): names, or your "
                  "own as module:function (with --recipe).")
flags.DEFINE_string("loss_model", None, "Model of (a): a name or module:function; default: "
                    "the first of --models where that is your own (module:function), else "
                    "inception (the paper's).")
flags.DEFINE_string("parts", "abc", "Which panels to run: any of a, b, c.")


def loss_model(F):
    """--loss_model, else your own model where --models starts with one, else inception."""
    if F.loss_model:
        return F.loss_model
    return F.models[0] if F.models and user_model.is_reference(F.models[0]) else "inception"


def points(F):
    return grids.figure1_points(suite.scale_of(F), F.data_dir, F.models, loss_model(F),
                                seed=F.seed, parts=F.parts, seeds=F.seeds, dataset=F.dataset,
                                recipe=F.recipe)


if __name__ == "__main__":
    entry.run(lambda argv: suite.main(points, plots.figure1))
