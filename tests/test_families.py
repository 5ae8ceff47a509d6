"""One record per model family (rethinkgen_tf.recipes.Family): every per-family table the
package reads is a view of the records."""
import re

from rethinkgen_tf import grids, models, plots, recipes, scales
from rethinkgen_tf.recipes import FAMILIES, OTHER, OTHER_FAMILY


def test_every_family_has_one_record():
    names = [f.name for f in FAMILIES]
    assert names == ["inception", "wrn", "alexnet", "mlp", "linear"]
    assert len(set(names)) == len(names) and OTHER not in names and OTHER_FAMILY.name == OTHER
    for f in FAMILIES:
        assert f.label and f.throughput > 0 and f.epochs_to_fit > 0
        for m in f.models:
            assert models.known(m.name) and m.label
            # a model's record sits under its own family (inception_nobn: Inception with BN off)
            assert models.family(m.name) == f.name


def test_every_per_family_table_is_a_view_of_the_records():
    assert recipes.RECIPES == {f.name: f.recipe for f in FAMILIES}
    assert recipes.FAMILY_NAMES == {f.name: f.label for f in FAMILIES}
    assert scales.THROUGHPUT == {**{f.name: f.throughput for f in FAMILIES}, OTHER: OTHER_FAMILY.throughput}
    assert scales.EPOCHS_TO_FIT == {**{f.name: f.epochs_to_fit for f in FAMILIES},
                                    OTHER: OTHER_FAMILY.epochs_to_fit}
    assert plots.MODEL_NAMES == recipes.MODEL_NAMES == {m.name: m.label for f in FAMILIES for m in f.models}
    assert models.PAPER_PARAMS == {m.name: m.paper_params for f in FAMILIES for m in f.models
                                   if m.paper_params is not None}
    assert set(models.DEFAULT_LEARNING_RATE) == {f.name for f in FAMILIES}
    assert recipes.family_record("inception_v3") is OTHER_FAMILY
    assert recipes.recipe("inception_v3") is OTHER_FAMILY.recipe
    # the cpu scale's sizes cover every family and the rest
    assert set(scales.CPU.train_size) == {f.name for f in FAMILIES} | {OTHER}
    # Figure 1's and Table 1's models are named in the records
    assert set(grids.FIG1_MODELS) <= set(recipes.MODEL_NAMES)
    assert {k[0] for k in grids.TABLE1} <= set(recipes.MODEL_NAMES)


def test_help_strings_group_the_records():
    text = recipes.by_family("learning_rate")
    assert text == "0.1 for Inception/WRN, 0.01 for AlexNet/MLPs/linear"
    assert all(re.search(rf"\b{re.escape(f.label)}\b", text) for f in FAMILIES)
