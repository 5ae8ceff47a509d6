"""Your own model: a Keras builder given by reference (``module:function``) or, from
Python, as a function object.

    python -m experiments.cifar --model=mynets.tiny:build --recipe=mlp ...
    python -m experiments.figure1 --models=mynets.tiny:build --recipe=mlp ...

The builder contract (README.md, docs/training.md#your-model):

  * ``build(input_shape, num_classes, **options)`` returns a ``keras.Model`` mapping a
    batch of preprocessed float32 images of shape ``input_shape`` (height, width,
    channels) to ``[batch, num_classes]`` logits: no softmax at the end (the loss
    applies it).  A function with no required parameters is a model factory, called
    with no arguments; its model must still take the data's images and classes.
  * options: ``batchnorm`` (True/False), ``dropout`` (a rate), ``bn_momentum``; each is
    passed only if the builder's signature names it (or has ``**kwargs``) and only when
    set (``dropout`` always, 0.0 by default).  Setting one the builder does not take
    (e.g. ``--dropout=0.5``) is an error, never silently ignored.
  * ``--weight_decay`` is applied to every kernel of the returned model, as for the
    built-in models.
  * the recipe (learning rate, its decay, epochs) is explicit: ``--recipe=FAMILY``
    borrows a built-in family's, or the flags give each value.

Each broken promise is one line (ValueError): the module does not import, has no such
attribute, the attribute is not callable, the builder raises, returns something other
than a Keras model, a model that fails on a batch of the data's images, that has
another output shape, or that ends in a softmax.

A run's identity includes the model's architecture (`architecture`: a hash of the
model's configuration and weight shapes, layer names and dtypes left out), recorded as
TrainConfig.model_arch: a run directory is resumed only by the same architecture.
"""
import hashlib
import importlib
import inspect
import json
import re

import numpy as np

FAMILY = "user"    # models.family of a model given by reference (no built-in recipe)
OPTIONS = ("batchnorm", "dropout", "bn_momentum")
_PART = r"[A-Za-z_][A-Za-z0-9_]*"
REFERENCE = re.compile(rf"{_PART}(\.{_PART})*:{_PART}(\.{_PART})*")
_REGISTERED = {}   # reference -> builder object (the Python API's function objects)
_ARCH_CACHE = {}   # (builder, input_shape, num_classes, options) -> architecture hash


def is_reference(name):
    """Whether a model name is a reference to a builder (it holds a ':')."""
    return isinstance(name, str) and ":" in name


def register(name, fn):
    """Makes reference `name` resolve to the function object `fn` in this process (the
    Python API's builders, which need not be importable by name)."""
    if not is_reference(name):
        raise ValueError(f"model name {name!r} must look like module:function")
    _REGISTERED[name] = fn
    _ARCH_CACHE.clear()
    return name


def reference_of(fn):
    """'module:qualname' of a function object."""
    module = getattr(fn, "__module__", None) or "__main__"
    qualname = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) \
        or type(fn).__name__
    return f"{module}:{qualname}"


def resolve(ref):
    """The builder that reference `ref` names: a registered object, or module:attr
    imported (from sys.path, which PYTHONPATH extends); ValueError, one line, if not."""
    if ref in _REGISTERED:
        return _REGISTERED[ref]
    if not REFERENCE.fullmatch(ref or ""):
        raise ValueError(f"model {ref!r}: a model given by reference is module:function "
                         "(e.g. mynets.tiny:build, with mynets on PYTHONPATH)")
    module_name, attr = ref.split(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as e:  # the user's code: SyntaxError, ImportError, anything it raises
        detail = re.sub(r"\s+", " ", str(e)).strip()[:200]
        advice = "; put its folder on PYTHONPATH" if isinstance(e, ModuleNotFoundError) \
            and getattr(e, "name", None) == module_name.split(".")[0] else ""
        raise ValueError(f"model {ref}: cannot import {module_name} ({type(e).__name__}: "
                         f"{detail}){advice}") from None
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            where = getattr(module, "__file__", None) or module_name
            raise ValueError(f"model {ref}: {module_name} ({where}) has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"model {ref}: {attr} is a {type(obj).__name__}, not a function that "
                         "builds a Keras model")
    return obj


def _parameters(fn):
    """(whether fn takes **kwargs, the keyword names it takes, its required parameters)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # no signature (some builtins): assume the contract
        return True, set(), ["input_shape", "num_classes"]
    var_kw = any(p.kind == p.VAR_KEYWORD for p in params)
    names = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    required = [p.name for p in params if p.default is p.empty
                and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    return var_kw, names, required


def passed_options(ref, fn, batchnorm=None, dropout=0.0, bn_momentum=None):
    """The options to pass to builder `fn`: the ones it takes, of those set; ValueError if
    one is set that it does not take."""
    var_kw, names, required = _parameters(fn)
    given = {"batchnorm": batchnorm, "dropout": dropout, "bn_momentum": bn_momentum}
    out = {}
    for k, v in given.items():
        if required and (var_kw or k in names):  # a factory (no required args) takes none
            if v is not None:
                out[k] = v
        elif not (v is None or (k == "dropout" and v == 0.0)):
            raise ValueError(f"model {ref}: {k}={v} is set, but its builder takes no {k!r} "
                             f"argument; add {k}=... to its parameters or leave --{k} unset")
    return out


def build(ref, input_shape, num_classes, batchnorm=None, dropout=0.0, bn_momentum=None):
    """The model of builder `ref` for images of `input_shape` and `num_classes` classes,
    checked against the contract (module docstring); ValueError, one line, if broken."""
    import keras

    fn = resolve(ref)
    opts = passed_options(ref, fn, batchnorm, dropout, bn_momentum)
    _, _, required = _parameters(fn)
    input_shape = tuple(int(d) for d in input_shape)
    try:
        model = fn(input_shape, int(num_classes), **opts) if required else fn()
    except Exception as e:
        detail = re.sub(r"\s+", " ", str(e)).strip()[:200]
        raise ValueError(f"model {ref}: the builder raised {type(e).__name__}: {detail} "
                         f"(called with input_shape={input_shape}, num_classes={num_classes}"
                         f"{''.join(f', {k}={v!r}' for k, v in opts.items())})") from None
    if not isinstance(model, keras.Model):
        raise ValueError(f"model {ref}: the builder returned {type(model).__name__}, not a "
                         "keras.Model (return e.g. keras.Sequential([...]) or keras.Model(inputs, "
                         "logits))")
    _check_outputs(ref, model, input_shape, num_classes)
    return model


def _check_outputs(ref, model, input_shape, num_classes):
    """One forward pass on two random images: the output must be [2, num_classes] logits."""
    x = np.random.default_rng(0).normal(size=(2, *input_shape)).astype("float32")
    try:
        y = model(x, training=False)
    except Exception as e:
        detail = re.sub(r"\s+", " ", str(e)).strip()[:200]
        raise ValueError(f"model {ref}: the model fails on a batch of images of shape "
                         f"{input_shape} (the data's, after cropping): {type(e).__name__}: "
                         f"{detail}") from None
    if isinstance(y, (list, tuple, dict)):
        raise ValueError(f"model {ref}: the model has {len(y)} outputs; it must have one, the "
                         f"[batch, {num_classes}] logits")
    shape = tuple(y.shape)
    if shape != (2, num_classes):
        raise ValueError(f"model {ref}: the model's output has shape {(None, *shape[1:])}, "
                         f"expected (None, {num_classes}): one logit per class of the data")
    last = _last_activation(model)
    y = np.asarray(y, dtype="float64")
    if last == "softmax" or (np.all(y >= 0) and np.allclose(y.sum(-1), 1.0, atol=1e-5)):
        raise ValueError(f"model {ref}: the model outputs probabilities (a softmax at the "
                         "end); return logits: drop the softmax (activation=None on the last "
                         "layer), the loss applies it")


def _last_activation(model):
    """The name of the activation of the model's last layer ('softmax', ...), or None."""
    import keras
    layers = list(getattr(model, "layers", []))
    while layers:
        layer = layers[-1]
        if isinstance(layer, keras.layers.Softmax):
            return "softmax"
        inner = getattr(layer, "layers", None)
        if inner:  # a nested model or Sequential: its last layer
            layers = list(inner)
            continue
        act = getattr(layer, "activation", None)
        return getattr(act, "__name__", None) if act is not None else None
    return None


def all_layers(model):
    """Every layer of a model, nested models' layers included (public API only)."""
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from all_layers(layer)


def architecture(model):
    """A hash (12 hex digits) of a model's architecture: its configuration with layer names
    replaced by their positions and dtypes and compile settings left out, and its weight
    shapes.  Names change
    with how many layers the process built before; dtypes with the precision (which is
    part of the run's identity anyway)."""
    layers = [model, *all_layers(model)]

    def strip(o):  # dtypes and the optimizer/loss (compile_config) out
        if isinstance(o, dict):
            return {k: strip(v) for k, v in o.items()
                    if k not in ("dtype", "dtype_policy", "compile_config")}
        return [strip(v) for v in o] if isinstance(o, list) else o

    names = {}

    def collect(o):  # layer (and model) names, numbered in order of appearance
        if isinstance(o, dict):
            inner = o.get("config")
            if "class_name" in o and isinstance(inner, dict) and isinstance(inner.get("name"), str):
                names.setdefault(inner["name"], f"#{len(names)}")
            for v in o.values():
                collect(v)
        elif isinstance(o, list):
            for v in o:
                collect(v)

    def renamed(o):
        if isinstance(o, dict):
            return {k: renamed(v) for k, v in o.items()}
        if isinstance(o, list):
            return [renamed(v) for v in o]
        return names.get(o, o) if isinstance(o, str) else o

    try:
        config = strip(json.loads(model.to_json()))
        collect(config)
        config = renamed(config)
    except Exception:  # a subclassed model without get_config: its class and weights only
        config = f"{type(model).__module__}.{type(model).__qualname__}"
    shapes = [[type(layer).__name__, [list(w.shape) for w in layer.weights]]
              for layer in layers[1:]] or [list(w.shape) for w in model.weights]
    blob = json.dumps({"config": config, "weights": shapes}, sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:12]


def architecture_of(ref, input_shape, num_classes, batchnorm=None, dropout=0.0,
                    bn_momentum=None):
    """architecture() of builder `ref`'s model for this data (built once per process and
    arguments, in float32)."""
    import keras
    fn = resolve(ref)
    key = (ref, id(fn), tuple(int(d) for d in input_shape), int(num_classes), batchnorm,
           dropout, bn_momentum)
    if key not in _ARCH_CACHE:
        policy = keras.config.dtype_policy()
        keras.config.set_dtype_policy("float32")
        try:
            model = build(ref, input_shape, num_classes, batchnorm, dropout, bn_momentum)
        finally:
            keras.config.set_dtype_policy(policy)
        _ARCH_CACHE[key] = architecture(model)
        del model
    return _ARCH_CACHE[key]


# ---------------------------------------------------------------- the data's shape


def data_shape(data_config, data=None):
    """(input_shape, num_classes, num_train, num_test) of a DataConfig's data as the model
    sees it (after cropping; num_train/num_test of the whole splits, or None where not
    known without reading them), from a loaded Data if given, else by looking at the
    data: CIFAR-10, MNIST and ImageNet sizes are known; a class-folder dataset's classes
    are listed and one image decoded; a .npz file's arrays are read."""
    from rethinkgen_tf.data.config import Data
    if isinstance(data, Data):
        return tuple(data.input_shape), data.num_classes, data.num_train, data.num_test
    from rethinkgen_tf.data import datasets
    from rethinkgen_tf.data.sources import load_npz
    c = data_config
    record = datasets.BY_NAME.get(c.dataset)
    if record is not None and record.image_shape is not None and record.num_classes is not None:
        return _cropped(record.image_shape, c.crop), record.num_classes, record.num_train, record.num_test
    if c.dataset == "imagenet":
        side = c.image_size or 299
        return (side, side, 3), c.num_classes or 1000, None, None
    if c.dataset == "numpy":
        if isinstance(data, (tuple, list)) and len(data) == 4:
            x, y, _, yt = data
            xt_len = len(data[2])
        elif c.data_dir:
            x, y, xt, yt = load_npz(c.data_dir)
            xt_len = len(xt)
        else:
            raise ValueError("dataset='numpy' needs its arrays: --data_dir=FILE.npz holding "
                             "x_train, y_train, x_test, y_test")
        shape = tuple(np.shape(x)[1:]) + ((1,) if np.ndim(x) == 3 else ())
        k = int(max(np.max(y, initial=0), np.max(yt, initial=0))) + 1
        return _cropped(shape, c.crop), k, len(y), xt_len
    if c.dataset == "folder":
        from rethinkgen_tf.data import sources
        if not c.data_dir:
            raise ValueError("dataset='folder' needs --data_dir=<dir with train/<class>/* and "
                             "test/<class>/*>")
        files, classes = sources.list_class_folders(sources._split_dir(c.data_dir, "train",
                                                                        "folder"))
        test_files, _ = sources.list_class_folders(sources._split_dir(c.data_dir, "test",
                                                                       "folder"))
        path = files[0][0]
        with open(path, "rb") as f:
            image = sources._decode((path, f.read()))
        shape = image.shape + ((1,) if image.ndim == 2 else ())
        return _cropped(shape, c.crop), len(classes), len(files), len(test_files)
    raise ValueError(f"dataset {c.dataset!r}: its image shape is not known before loading it")


def _cropped(shape, crop):
    return (crop, crop, shape[-1]) if crop else tuple(shape)


def identified(train_config, data_config, data=None):
    """train_config with model_arch set (for a model given by reference whose model_arch
    is None; other configs are returned as they are)."""
    import dataclasses
    if not is_reference(train_config.model) or train_config.model_arch is not None:
        return train_config
    input_shape, k, _, _ = data_shape(data_config, data)
    arch = architecture_of(train_config.model, input_shape, k, train_config.batchnorm,
                           train_config.dropout, train_config.bn_momentum)
    return dataclasses.replace(train_config, model_arch=arch)


def no_recipe_line(model, missing):
    """The one line refusing a model without a recipe."""
    from rethinkgen_tf import recipes
    return (f"model {model} has no built-in training recipe: pass --recipe=FAMILY to borrow "
            f"one ({'|'.join(recipes.RECIPES)}), or give {', '.join('--' + m for m in missing)} "
            "explicitly")

