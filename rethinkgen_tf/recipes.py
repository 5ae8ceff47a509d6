"""The model families, one record each (`Family`), as data: what a run of a family
trains with (its `Recipe`), its names, the paper's parameter counts of its models,
and its measured speed here.  Flags and keyword arguments are overrides on top of
the recipes.

    recipe("mlp")                # Recipe(learning_rate=0.01, lr_decay=0.985, epochs=200, ...)
    family_record("mlp").label   # "MLPs"

`TrainConfig.resolved()` fills the settings left at None (learning rate,
decay, epochs) from `recipe(family)`; the suite's scales (`rethinkgen_tf.scales`)
read the recipes too.  This module imports nothing of the package, so `models`,
`train` and `scales` read it and the flag help strings quote it (they cannot
disagree with the code).

The numbers and why (docs/training.md has the runs, docs/experiments.md the
scales):
  * learning rate 0.1 for Inception and WRN, 0.01 for AlexNet and the MLPs
    (docs/paper.md#training), SGD momentum 0.9, batch 128;
  * the paper's decay, x0.95 per epoch, leaves the rate at 0.6% of the start
    after 100 epochs: enough for the convnets, but MLP 1x512 then stalls at
    98.4% on random labels (the paper reports 99.34%).  MLPs decay by x0.985
    over 200 epochs: 99.996% (2 of 50,000 unfit; x0.98 over 150 epochs left 4);
  * batch norm (on by default for Inception and WRN) averages its statistics
    with decay 0.997 per step, TF-slim's Inception.
"""
import dataclasses
from typing import Optional

PAPER_LR_DECAY = 0.95     # the paper's learning-rate factor per epoch
BN_MOMENTUM = 0.997       # batch norm moving-average decay (TF-slim's Inception); models' default
TABLE4_LR_DECAY = 0.999   # Table 4 (random labels with regularizers): the slower decay it needed
WEIGHT_DECAY = 5e-4       # where a run has weight decay (Tables 1, 4): the reproductions' (docs/paper.md#training)
OTHER = "other"           # key of a per-family mapping for the families it does not name


@dataclasses.dataclass(frozen=True)
class Recipe:
    """A model family's defaults: what a TrainConfig setting left at None becomes."""
    learning_rate: float
    lr_decay: float = PAPER_LR_DECAY   # factor per epoch (staircase, by step)
    epochs: int = 100
    # Decay of the batch norm the family has by default; None: no batch norm by
    # default (AlexNet, MLPs: --batchnorm adds it with BN_MOMENTUM), or not ours
    # to set (inception_v3, keras.applications).
    bn_momentum: Optional[float] = None

    @property
    def batchnorm(self):
        """Whether the family has (our) batch norm by default."""
        return self.bn_momentum is not None


@dataclasses.dataclass(frozen=True)
class Model:
    """A named model of the paper's figures and tables."""
    name: str                           # models.build's name: "mlp_1x512"
    label: str                          # in figures and tables: "MLP 1x512"
    paper_params: Optional[int] = None  # the paper's parameter count (Table 1), if it gives one


@dataclasses.dataclass(frozen=True)
class Family:
    """One model family (models.family of a model name): everything the package knows of it.

    recipe: its training defaults.  label: its name in help strings.  throughput and
    epochs_to_fit: on the 2-core dev machine, quiet (docs/experiments.md#scales),
    training images per second and epochs until the training set is fit at the cpu
    scale's schedule (the slowest p), the inputs of scales.cpu_train_size.  models:
    its named models in the paper's figures and tables.
    """
    name: str
    label: str
    recipe: Recipe
    throughput: int = 100
    epochs_to_fit: int = 30
    models: tuple = ()


# The paper's CIFAR-10 families.  Throughput: MLP 1x512 from train.py's log at full
# scale; AlexNet, Inception as measured before; linear not measured, at least the
# MLP's, whose first layer it is a 10-unit version of.
FAMILIES = (
    Family("inception", "Inception",
           Recipe(learning_rate=0.1, lr_decay=PAPER_LR_DECAY, epochs=100, bn_momentum=BN_MOMENTUM),
           throughput=100, epochs_to_fit=30,
           models=(Model("inception", "Inception", 1_649_402),
                   Model("inception_nobn", "Inception w/o BatchNorm", 1_649_402))),
    Family("wrn", "WRN",
           Recipe(learning_rate=0.1, lr_decay=PAPER_LR_DECAY, epochs=100, bn_momentum=BN_MOMENTUM),
           throughput=100, epochs_to_fit=30),
    Family("alexnet", "AlexNet", Recipe(learning_rate=0.01, lr_decay=PAPER_LR_DECAY, epochs=100),
           throughput=500, epochs_to_fit=30,
           models=(Model("alexnet", "AlexNet", 1_387_786),)),
    Family("mlp", "MLPs", Recipe(learning_rate=0.01, lr_decay=0.985, epochs=200),
           throughput=35_000, epochs_to_fit=45,
           models=(Model("mlp_1x512", "MLP 1x512", 1_209_866),
                   Model("mlp_3x512", "MLP 3x512", 1_735_178))),
    # the linear control (softmax regression) trains like the MLPs
    Family("linear", "linear", Recipe(learning_rate=0.01, lr_decay=0.985, epochs=200),
           throughput=35_000, epochs_to_fit=45,
           models=(Model("linear", "linear (control)"),)),
)
# Any other family (inception_v3: experiments/imagenet.py passes its own schedule).
OTHER_FAMILY = Family(OTHER, "other", Recipe(learning_rate=0.1, lr_decay=PAPER_LR_DECAY, epochs=100),
                      throughput=100, epochs_to_fit=30)

# Views of the records, for the readers that look up one field by name.
BY_NAME = {f.name: f for f in FAMILIES}
RECIPES = {f.name: f.recipe for f in FAMILIES}
OTHER_RECIPE = OTHER_FAMILY.recipe
FAMILY_NAMES = {f.name: f.label for f in FAMILIES}
MODEL_NAMES = {m.name: m.label for f in FAMILIES for m in f.models}            # figures, tables
PAPER_PARAMS = {m.name: m.paper_params for f in FAMILIES for m in f.models if m.paper_params}


def family_record(family):
    """The Family record of a family name (OTHER_FAMILY for the families not listed)."""
    return BY_NAME.get(family, OTHER_FAMILY)


def recipe(family):
    """The Recipe of a model family ('inception', 'mlp', ...; see models.family)."""
    return RECIPES.get(family, OTHER_RECIPE)


def by_family(field, fmt=str):
    """'0.1 for Inception/WRN, 0.01 for AlexNet/MLPs': a Recipe field (or property) per
    family as fmt(value), for help strings; families with equal values grouped, in
    FAMILIES order."""
    groups = {}
    for f in FAMILIES:
        groups.setdefault(getattr(f.recipe, field), []).append(f.label)
    return ", ".join(f"{fmt(v)} for {'/'.join(names)}" for v, names in groups.items())
