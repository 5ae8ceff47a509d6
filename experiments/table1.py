"""Table 1 of the paper (regularizers on CIFAR-10), ours beside the paper's numbers,
as Markdown and LaTeX; --table4 runs Table 4 (random labels with regularizers).

    python -m experiments.table1 --scale=cpu --models=mlp_1x512,alexnet --data_dir=...
    python -m experiments.table1 --table4
"""
from absl import flags

from rethinkgen_tf import entry, grids, plots, recipes, suite

suite.define_flags("runs/table1")
flags.adopt_module_key_flags(suite)
flags.DEFINE_list("models", list(grids.TABLE1_MODELS), "Rows of these models (with --table4: "
                  "of Table 4's models, the rows of those named).")
flags.DEFINE_bool("table4", False, "Table 4 instead: random labels with weight decay, "
                  f"random crop or augmentation, learning-rate decay {recipes.TABLE4_LR_DECAY} "
                  "per epoch (--scale=cpu: per 50,000 examples).")


def points(F):
    if F.table4:
        table4 = {m for m, _ in grids.TABLE4}
        models = None if set(F.models) == set(grids.TABLE1_MODELS) else \
            [m for m in F.models if m in table4 or m not in grids.TABLE1_MODELS]
        return grids.table4_points(suite.scale_of(F), F.data_dir, seed=F.seed, seeds=F.seeds,
                                   models=models)
    return grids.table1_points(suite.scale_of(F), F.data_dir, F.models, seed=F.seed,
                               seeds=F.seeds, dataset=F.dataset, recipe=F.recipe)


def draw(pairs, out_dir):
    return (plots.table4 if flags.FLAGS.table4 else plots.table1)(pairs, out_dir)


if __name__ == "__main__":
    entry.run(lambda argv: suite.main(points, draw))
