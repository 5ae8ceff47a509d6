"""Figures and tables from saved results (no training): PNG + PDF, Markdown + LaTeX.

Each function takes [(suite.Point, result or None)] as returned by
``suite.collect`` and an output directory, writes its files there, and
returns a dict of the key numbers it plotted; `dynamics` takes run directories
and draws their per-example records (examples.npz, rethinkgen_tf.dynamics);
`kernel_curve` takes a kernel experiment's summary (kernels.kernel_experiment).

A run whose loss became non-finite (result status "diverged", `results.diverged`) has
no numbers to show: the tables say "diverged" in its cells, the figures leave it out
and name it in a note, and means over seeds are over the other seeds (and say so).
"""
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.lines  # noqa: E402
import matplotlib.patches  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402

from rethinkgen_tf import results  # noqa: E402
from rethinkgen_tf.grids import TABLE1, TABLE4  # noqa: E402
from rethinkgen_tf.ops.randomizations import LABELS  # noqa: E402  (each randomization's legend)
from rethinkgen_tf.recipes import MODEL_NAMES  # noqa: E402  (each paper model's name)


def _save(fig, out_dir, name):
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext in ("png", "pdf"):
        p = out_dir / f"{name}.{ext}"
        fig.savefig(p, dpi=150, bbox_inches="tight")
        paths.append(str(p))
    plt.close(fig)
    return paths


def _rows(res):
    return results.read_metrics(res["run_dir"]) if res and "run_dir" in res else []


def by_seed(pairs, *keys, diverged=False):
    """{tuple of the tags `keys`: [(seed, result)] of its finished runs}, in grid order: the
    seeds of one point of a grid (a point's `seed` tag, 0 if it has none).  diverged=True:
    of its diverged runs instead (the same keys, in the same order)."""
    out = {}
    for p, res in pairs:
        group = out.setdefault(tuple(p.tag.get(k) for k in keys), [])
        if res is not None and results.diverged(res) == diverged:
            group.append((p.tag.get("seed", 0), res))
    return out


def _diverged_at(runs):
    """'seed 0 at epoch 3, seed 1 at epoch 5' for [(seed, diverged result)]."""
    return ", ".join(f"seed {sd} at epoch {r.get('diverged_epoch', '?')}" for sd, r in runs)


DIVERGED_NOTE = ("diverged: the run's loss became non-finite (result.json status \"diverged\"); "
                 "it has no numbers and is left out of the means over seeds")


def mean_std(values):
    """(mean, sample standard deviation (0 for one value), count) of the finite values;
    (None, None, 0) if there is none."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=float)
    if not len(v):
        return None, None, 0
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0, len(v)


def _n_seeds(groups):
    ns = sorted({len(g) for g in groups if g})
    return "/".join(map(str, ns)) or "0"


def _sizes(groups):
    ns = sorted({r["num_train"] for g in groups for _, r in g if r.get("num_train")})
    return "/".join(f"{n:,}" for n in ns) or "?"


def _test_error(res):
    acc = (res.get("final") or {}).get("test_acc")
    return None if acc is None else 1 - acc


# The paper's Figure 1 (docs/paper.md#results): (b) at p = 1 the time to overfit is about
# 1.5x to 4x the true labels'; (c) test error at p = 0 is Table 1's (no regularizer) and
# about 90% at p = 1.
PAPER_SLOWDOWN_AT_1 = (1.5, 4.0)
PAPER_TEST_ERROR_AT_0 = {m: 1 - TABLE1[(m, False, False, False)][1] / 100
                         for m in ("inception", "alexnet", "mlp_1x512")}


def figure1(pairs, out_dir):
    """1a: training loss vs steps; 1b: normalized time to overfit; 1c: test error.
    With several seeds per point: (a) every seed's curve, (b, c) means with error bars
    (one standard deviation over seeds).  Labels say n and the number of seeds."""
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.4))
    numbers = {"a": {}, "b": {}, "c": {}}
    a_pairs = [(p, r) for p, r in pairs if p.tag["part"] == "a"]
    a_runs, a_div = by_seed(a_pairs, "randomize"), by_seed(a_pairs, "randomize", diverged=True)
    diverged = [f"(a) {LABELS[r]}: {_diverged_at(g)}" for (r,), g in a_div.items() if g]
    last_step = 0
    for k, ((randomize,), runs) in enumerate(a_runs.items()):
        color = f"C{k}"
        for j, (sd, res) in enumerate(runs):
            rows = _rows(res)
            last_step = max([last_step] + [r["step"] for r in rows])
            axes[0].plot([r["step"] / 1000 for r in rows], [r["train_loss"] for r in rows],
                         color=color, label=None if j else LABELS[randomize])
        steps = [r.get("overfit_step") for _, r in runs]
        numbers["a"][randomize] = {
            "overfit_step": dict(zip([sd for sd, _ in runs], steps)),
            "overfit_step_mean": mean_std(steps)[0],
            "final_train_loss": [(_rows(r) or [{}])[-1].get("train_loss") for _, r in runs]}
        if a_div[(randomize,)]:
            numbers["a"][randomize]["diverged"] = {sd: r.get("diverged_epoch")
                                                   for sd, r in a_div[(randomize,)]}
    if any(a_runs.values()):
        axes[0].set(xlabel="thousand steps", ylabel="average loss",
                    title=f"(a) {_a_model(pairs)}, n = {_sizes(a_runs.values())}, "
                          f"{_n_seeds(a_runs.values())} seed(s)")
    elif not a_pairs:  # (a) is not in this grid (--parts): no empty panel
        axes[0].remove()
    else:
        axes[0].set(title="(a) the five randomizations", xticks=[], yticks=[])
        axes[0].text(0.5, 0.5, "diverged (see below)" if diverged else "not run",
                     ha="center", va="center", transform=axes[0].transAxes, color="gray")
    # Runs that went on long after the loss is ~0: show up to twice the slowest time to overfit.
    fit = [numbers["a"][r]["overfit_step_mean"] for (r,), runs in a_runs.items() if runs]
    if fit and all(fit) and last_step > 2 * max(fit):
        axes[0].set_xlim(0, 2 * max(fit) / 1000)
    bc = [(p, r) for p, r in pairs if p.tag["part"] == "bc"]
    models = list(dict.fromkeys(p.tag["model"] for p, _ in bc))
    groups = by_seed(bc, "model", "corrupt")
    diverged += [f"(b, c) {MODEL_NAMES.get(m, m)}, p = {c:g}: {_diverged_at(g)}"
                 for (m, c), g in by_seed(bc, "model", "corrupt", diverged=True).items() if g]
    unfit = []
    for k, model in enumerate(models):
        color, name = f"C{k}", MODEL_NAMES.get(model, model)
        runs = {c: g for (m, c), g in groups.items() if m == model}
        base = {sd: r.get("overfit_step") for sd, r in runs.get(0.0, [])}
        label = f"{name} (n = {_sizes(runs.values())}, {_n_seeds(runs.values())} seed(s))"
        b, c = {}, {}
        for p_, g in sorted(runs.items()):
            rel = [r["overfit_step"] / base[sd] for sd, r in g
                   if r.get("overfit_step") and base.get(sd)]
            b[p_], c[p_] = mean_std(rel), mean_std([_test_error(r) for _, r in g])
        pb = [p_ for p_ in b if b[p_][2]]
        if pb:
            axes[1].errorbar(pb, [b[p_][0] for p_ in pb], [b[p_][1] for p_ in pb], fmt="o-",
                             capsize=3, color=color, label=label)
        elif runs:
            acc = [(r.get("final") or {}).get("train_eval_acc") for g in runs.values() for _, r in g]
            acc = [a for a in acc if a is not None]
            if acc:
                unfit.append(f"{name}: never fit (train acc. {100 * min(acc):.0f}-{100 * max(acc):.0f}%)")
        pc = [p_ for p_ in c if c[p_][2]]
        axes[2].errorbar(pc, [100 * c[p_][0] for p_ in pc], [100 * c[p_][1] for p_ in pc],
                         fmt="o-", capsize=3, color=color, label=label)
        if model in PAPER_TEST_ERROR_AT_0:
            # only where the paper states a value: no line through values it never gives
            axes[2].plot([0, 1], [100 * PAPER_TEST_ERROR_AT_0[model], 90], "x", ls="none",
                         ms=9, mew=2, color=color, alpha=0.6,
                         label=f"{name}, paper (p = 0: Table 1; p = 1: about 90%)")
        numbers["b"][model] = {p_: {"mean": v[0], "std": v[1], "seeds": v[2]}
                               for p_, v in b.items() if v[2]}
        numbers["c"][model] = {p_: {"mean": v[0], "std": v[1], "seeds": v[2]}
                               for p_, v in c.items() if v[2]}
    if models:
        lo, hi = PAPER_SLOWDOWN_AT_1
        axes[1].plot([1, 1], [lo, hi], color="gray", lw=6, alpha=0.35, solid_capstyle="butt",
                     label=f"paper at p = 1: {lo:g}x-{hi:g}x (our reading of its figure)")
    if unfit:
        axes[1].text(0.02, 0.98, "\n".join(unfit), transform=axes[1].transAxes, va="top",
                     fontsize=8, color="gray")
        numbers["b"]["never_fit"] = unfit
    axes[1].set(xlabel="label corruption p", ylabel="time to overfit (relative to p = 0)",
                title="(b) convergence slowdown")
    axes[2].set(xlabel="label corruption p", ylabel="test error (%)",
                title=f"(c) generalization error growth, {_tests(bc)} test images")
    shown = [ax.get_position() for ax in fig.axes]  # centred over the panels drawn
    fig.suptitle(_caption(pairs), fontsize=8, y=1.0, va="bottom",
                 x=(shown[0].x0 + shown[-1].x1) / 2)
    for ax in axes:
        if ax.lines:
            ax.legend(fontsize=7)
    if diverged:  # a caption under the panels drawn: which runs are left out
        drawn = [ax.get_position() for ax in fig.axes]
        fig.text((drawn[0].x0 + drawn[-1].x1) / 2, -0.02, "Not shown, diverged (loss "
                 "non-finite; left out of the means): " + "; ".join(diverged), ha="center",
                 va="top", fontsize=8, color="C3", wrap=True)
        numbers["diverged"] = diverged
    numbers["files"] = _save(fig, out_dir, "figure1")
    # next to it, from the same runs' examples.npz: clean vs corrupted examples per epoch
    numbers["dynamics"] = figure1_dynamics(pairs, out_dir)
    return numbers


def _tests(pairs):
    ns = sorted({r["num_test"] for _, r in pairs if r and r.get("num_test")})
    return "/".join(f"{n:,}" for n in ns) or "?"


def _caption(pairs):
    """One line per model of Figure 1: when a run counts as fit, and its schedule (from the
    runs' config.json)."""
    seen = {}
    for p, res in pairs:
        path = Path(res["run_dir"]) / "config.json" if res and "run_dir" in res else None
        if path is None or not path.exists() or p.tag.get("model") in seen:
            continue
        t, d = (results.read_json(path).get(k, {}) for k in ("train", "data"))
        def g(k, default=None, scale=1):
            v = t.get(k, default)
            return f"{scale * v:.4g}" if isinstance(v, (int, float)) else "?"
        seen[p.tag.get("model")] = (
            f"{MODEL_NAMES.get(t.get('model'), t.get('model'))}: fit = re-evaluated training "
            f"accuracy >= {g('overfit_threshold', 1.0, 100)}%, lr {g('learning_rate')} "
            f"x{g('lr_decay', 1.0)} per epoch, momentum {g('momentum', 0.9)}, batch "
            f"{d.get('batch_size', '?')}")
    return "\n".join(seen.values())


def _a_model(pairs):
    models = {p.tag.get("model") for p, _ in pairs if p.tag.get("part") == "a"}
    return ", ".join(MODEL_NAMES.get(m, m) for m in sorted(models)) or "no runs"


def _pct(x):
    return "—" if x is None else f"{100 * x:.2f}"


def _pct_seeds(values):
    """'36.85' for one seed, '36.85 ± 0.40' (mean ± std, %) for several, '—' for none."""
    mean, std, n = mean_std(values)
    if n == 0:
        return "—"
    return _pct(mean) if n == 1 else f"{100 * mean:.2f} ± {100 * std:.2f}"


def _final(g, key):
    return [(r.get("final") or {}).get(key) for _, r in g]


def _cell(g, dv, key):
    """A table cell: the finished seeds' mean (± std) of final[key], and how many seeds
    diverged (left out); 'diverged (epoch e)' when every seed diverged; '(not run)'."""
    if g:
        return _pct_seeds(_final(g, key)) + (f" ({len(dv)} diverged, left out)" if dv else "")
    if dv:
        epochs = dict.fromkeys(str(r.get("diverged_epoch", "?")) for _, r in dv)
        return f"diverged (epoch {'/'.join(epochs)})"
    return "(not run)" if key == "train_eval_acc" else ""


def _seeds(g, dv):
    return str(len(g)) + (f" + {len(dv)} diverged" if dv else "")


def table1(pairs, out_dir):
    """Markdown and LaTeX, ours (mean ± std over seeds when there are several) beside the
    paper's numbers; the linear control's rows have none."""
    head = ["model", "random crop", "weight decay", "labels", "train (ours)", "test (ours)",
            "train (paper)", "test (paper)", "train size", "epochs", "seeds"]
    lines = []
    keys = ("model", "crop", "wd", "random_labels")
    div = by_seed(pairs, *keys, diverged=True)
    for key, g in by_seed(pairs, *keys).items():
        model, crop, wd, random_labels = key
        paper, dv = TABLE1.get(key, (None, None)), div[key]
        lines.append([MODEL_NAMES.get(model, model), "yes" if crop else "no",
                      "yes" if wd else "no", "random" if random_labels else "true",
                      _cell(g, dv, "train_eval_acc"), _cell(g, dv, "test_acc"),
                      "—" if paper[0] is None else f"{paper[0]:.2f}",
                      "—" if paper[1] is None else f"{paper[1]:.2f}",
                      "/".join(sorted({str(r["num_train"]) for _, r in g + dv if r.get("num_train")})),
                      "/".join(sorted({str(r.get("epochs")) for _, r in g}, key=int)),
                      _seeds(g, dv)])
    return _write_table(head, lines, out_dir, "table1", any(div.values()))


def table4(pairs, out_dir):
    head = ["model", "regularizer", "train (ours)", "test (ours)", "train (paper)", "seeds"]
    lines = []
    div = by_seed(pairs, "model", "regularizer", diverged=True)
    for (model, reg), g in by_seed(pairs, "model", "regularizer").items():
        paper, dv = TABLE4.get((model, reg)), div[(model, reg)]
        lines.append([MODEL_NAMES.get(model, model), reg.replace("_", " "),
                      _cell(g, dv, "train_eval_acc"), _cell(g, dv, "test_acc"),
                      "fails to converge" if paper is None else f"{paper:.2f}", _seeds(g, dv)])
    return _write_table(head, lines, out_dir, "table4", any(div.values()))


def _write_table(head, lines, out_dir, name, diverged=False):
    """name.md and name.tex; with diverged runs, DIVERGED_NOTE under the table."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    md = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    md += ["| " + " | ".join(row) + " |" for row in lines]
    tex = ["\\begin{tabular}{" + "l" * 4 + "r" * (len(head) - 4) + "}", "\\hline",
           " & ".join(head) + " \\\\", "\\hline"]
    tex += [" & ".join(c.replace("%", "\\%").replace("—", "--").replace("±", "$\\pm$") for c in row) + " \\\\"
            for row in lines]
    tex += ["\\hline", "\\end{tabular}"]
    if diverged:
        md += ["", DIVERGED_NOTE[0].upper() + DIVERGED_NOTE[1:] + "."]
        tex += ["% " + DIVERGED_NOTE]
    results.atomic_write(out_dir / f"{name}.md", "\n".join(md) + "\n")
    results.atomic_write(out_dir / f"{name}.tex", "\n".join(tex) + "\n")
    return {"markdown": "\n".join(md), "files": [str(out_dir / f"{name}.md"),
                                                 str(out_dir / f"{name}.tex")]}


def implicit(pairs, out_dir):
    """Figure 2b: train/test accuracy vs steps, best-so-far test accuracy shaded."""
    fig, axes = plt.subplots(1, len(pairs), figsize=(6 * len(pairs), 4.2), squeeze=False)
    numbers = {}
    several = len({p.tag.get("seed", 0) for p, _ in pairs}) > 1
    for ax, (p, res) in zip(axes[0], pairs):
        name = MODEL_NAMES.get(p.tag["model"], p.tag["model"])
        key = p.tag["model"]
        if several:
            name += f", seed {p.tag['seed']}"
            key += f"_s{p.tag['seed']}"
        if results.diverged(res):  # no curve: say so where it would be
            epoch = res.get("diverged_epoch", "?")
            ax.set(title=name, xticks=[], yticks=[])
            ax.text(0.5, 0.5, f"diverged at epoch {epoch}\n(loss non-finite; not drawn)",
                    ha="center", va="center", transform=ax.transAxes, color="C3")
            numbers[key] = {"diverged_epoch": res.get("diverged_epoch")}
            continue
        rows = _rows(res)
        tested = results.tested(rows)
        steps = [r["step"] / 1000 for r in tested]
        test = [r["test_acc"] for r in tested]
        best = [max(test[:k + 1]) for k in range(len(test))]
        ax.plot([r["step"] / 1000 for r in rows], [r["train_eval_acc"] for r in rows],
                label="train")
        ax.plot(steps, test, label="test")
        ax.fill_between(steps, test, best, alpha=0.3, label="best test so far")
        ax.set(xlabel="thousand steps", ylabel="accuracy", title=name, ylim=(0, 1.02))
        ax.legend()
        numbers[key] = {"final_test": test[-1] if test else None,
                                   "best_test": best[-1] if best else None}
    sizes = sorted({res["num_train"] for _, res in pairs if res and res.get("num_train")})
    seeds = len({p.tag.get("seed", 0) for p, _ in pairs})
    if sizes:
        fig.suptitle(f"n = {', '.join(f'{n:,}' for n in sizes)}, {seeds} seed(s)", fontsize=10)
    numbers["files"] = _save(fig, out_dir, "figure2b")
    return numbers


# ---------------------------------------------------------------- per-example records
# (examples.npz, rethinkgen_tf.dynamics)

CLEAN, NOISY = "tab:blue", "tab:red"


def run_settings(run_dir):
    """One line of a run's settings for a title, from its config.json (the directory's
    name if there is none, e.g. records written by dynamics.ExampleRecorder)."""
    run_dir = Path(run_dir)
    path = run_dir / "config.json"
    if not path.exists():
        return run_dir.name or str(run_dir)
    cfg = results.read_json(path)
    t, d = cfg.get("train", {}), cfg.get("data", {})
    model = MODEL_NAMES.get(t.get("model"), t.get("model"))
    parts = [f"{model} on {d.get('dataset', '?')}"]
    if d.get("randomize", "none") != "none":
        parts.append(LABELS.get(d["randomize"], d["randomize"]))
    if d.get("corrupt"):
        parts.append(f"label corruption p = {d['corrupt']:g}")
    if d.get("train_size"):
        parts.append(f"n = {d['train_size']:,}")
    if isinstance(t.get("learning_rate"), (int, float)):
        parts.append(f"lr {t['learning_rate']:g}" + (f" x{t['lr_decay']:.4g}/epoch"
                                                     if t.get("lr_decay") else ""))
    parts.append(f"batch {d.get('batch_size', '?')}, seed {t.get('seed', 0)}")
    return ", ".join(parts)


def _accuracy_panel(ax, arrays, title=None, legend=True):
    """(1) re-evaluated training accuracy of clean and corrupted examples per epoch, and
    the corrupted examples' accuracy on their original labels."""
    from rethinkgen_tf import dynamics
    g = dynamics.group_accuracy(arrays)
    noisy = int(arrays["corrupted"].sum())
    clean = len(arrays["corrupted"]) - noisy
    e = g["epochs"]
    marker = "o" if len(e) <= 30 else None
    if clean:
        ax.plot(e, g["clean"], color=CLEAN, marker=marker, ms=3,
                label=f"clean examples, training label ({clean:,})")
    if noisy:
        ax.plot(e, g["noisy"], color=NOISY, marker=marker, ms=3,
                label=f"corrupted examples, training label ({noisy:,})")
        ax.plot(e, g["noisy_orig"], color=NOISY, ls="--", marker=marker, ms=3,
                label="corrupted examples, original label")
    ax.set(xlabel="epoch", ylabel="re-evaluated training accuracy", ylim=(-0.02, 1.02))
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title)
    if legend:
        ax.legend(fontsize=8, loc="best")
    return {"final_clean": float(g["clean"][-1]) if len(e) else None,
            "final_noisy": float(g["noisy"][-1]) if len(e) else None,
            "final_noisy_orig": float(g["noisy_orig"][-1]) if len(e) else None}


def _first_fit_panel(ax, arrays):
    """(2) the distribution of first-fit epochs, clean vs corrupted (share of each group)."""
    first, noisy = arrays["first_fit_epoch"], arrays["corrupted"].astype(bool)
    epochs = arrays["epochs"]
    edges = np.concatenate([epochs - 0.5, [epochs[-1] + 0.5]]) if len(epochs) else [0, 1]
    fits = first[first >= 0]
    last = epochs[-1] if len(epochs) else 1
    if len(fits):  # up to a little past the last first fit
        last = min(last, fits.max() + max(2, fits.max() // 10))
    out, data, weights, colors, names = {}, [], [], [], []
    for mask, color, name in ((~noisy, CLEAN, "clean"), (noisy, NOISY, "corrupted")):
        if not mask.any():
            continue
        f = first[mask]
        never = int((f < 0).sum())
        fit = f[f >= 0]
        data.append(fit)
        weights.append(np.full(len(fit), 1 / mask.sum()))
        colors.append(color)
        names.append(f"{name} ({mask.sum():,}; never fit: {never:,})")
        out[name] = {"median_first_fit": float(np.median(fit)) if len(fit) else None,
                     "never_fit": never}
    if data:  # bars side by side up to 40 epochs shown, outlines beyond
        bars = last - (epochs[0] if len(epochs) else 0) < 40
        ax.hist(data, bins=edges, weights=weights, color=colors,
                histtype="bar" if bars else "step", lw=1.5)
        ax.legend(handles=[matplotlib.patches.Patch(color=c, fill=bars, lw=1.5, label=n)
                           for c, n in zip(colors, names)], fontsize=8)
    if len(epochs):
        ax.set_xlim(epochs[0] - 0.5, last + 0.5)
    ax.set(xlabel="first epoch at which the example is fit (training label)",
           ylabel="share of the group's examples")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    return out


def _data_map_panel(ax, arrays, max_points=20_000):
    """(3) the data map: mean confidence in the training label vs its variability across
    epochs, coloured by corrupted (at most max_points examples, a fixed random sample,
    drawn in random order so that neither group hides the other)."""
    from rethinkgen_tf import dynamics
    conf, var = dynamics.data_map(arrays)
    noisy = arrays["corrupted"].astype(bool)
    order = np.random.default_rng(0).permutation(len(conf))[:max_points]
    ax.scatter(var[order], conf[order], s=4, alpha=0.4, lw=0, rasterized=True,
               c=np.where(noisy[order], NOISY, CLEAN))
    ax.legend(handles=[matplotlib.lines.Line2D([], [], ls="", marker="o", color=c,
                                               label=f"{name} ({mask.sum():,})")
                       for mask, c, name in ((~noisy, CLEAN, "clean"),
                                             (noisy, NOISY, "corrupted")) if mask.any()],
              fontsize=8)
    ax.set(xlabel="variability (std of p(training label) across epochs)",
           ylabel="confidence (mean p(training label))", ylim=(-0.02, 1.02), xlim=(0, None))
    ax.grid(alpha=0.3)
    if len(order) < len(conf):
        ax.text(0.99, 0.01, f"{len(order):,} of {len(conf):,} shown", transform=ax.transAxes,
                ha="right", va="bottom", fontsize=7, color="gray")
    return {"mean_confidence_clean": float(np.nanmean(conf[~noisy])) if (~noisy).any() else None,
            "mean_confidence_noisy": float(np.nanmean(conf[noisy])) if noisy.any() else None}


def dynamics(run_dirs, out):
    """From the runs' examples.npz alone: per run (one row), (1) accuracy of clean and
    corrupted examples per epoch, (2) first-fit epochs, (3) the data map (records with
    p_label; a note otherwise).  Writes out.png and out.pdf; returns the key numbers.
    results.StateError (one line naming the file) if a record is missing or damaged."""
    from rethinkgen_tf import dynamics as dyn
    runs = [(Path(d), dyn.load(d)) for d in run_dirs]
    full = any("p_label" in a for _, a in runs)
    cols = 3 if full else 2
    fig = plt.figure(figsize=(5.4 * cols, 4.6 * len(runs)), layout="constrained")
    subfigs = np.atleast_1d(fig.subfigures(len(runs), 1, hspace=0.05))
    numbers = {}
    for sf, (d, a) in zip(subfigs, runs):
        row = sf.subplots(1, cols)
        n = len(a["index"])
        e = a["epochs"]
        span = f"epochs {e[0]}-{e[-1]}" if len(e) else "no epochs"
        sf.suptitle(f"{run_settings(d)}\n{n:,} re-evaluated training examples, {span}",
                    fontsize=11, fontweight="bold")
        nums = {"accuracy": _accuracy_panel(row[0], a, "(1) accuracy by example group")}
        nums["first_fit"] = _first_fit_panel(row[1], a)
        row[1].set_title("(2) when each example is first fit")
        if full:
            if "p_label" in a:
                nums["data_map"] = _data_map_panel(row[2], a)
                row[2].set_title("(3) data map")
            else:
                row[2].axis("off")
                row[2].text(0.5, 0.5, "no data map: this run recorded no p_label\n"
                            "(train with --record_examples=full)", ha="center", va="center",
                            transform=row[2].transAxes, fontsize=9, color="gray")
        numbers[str(d)] = nums
    out = Path(out)
    numbers["files"] = _save(fig, out.parent, out.name)
    return numbers


def figure1_dynamics(pairs, out_dir):
    """Panel (1) of `dynamics` for each (b, c) run of Figure 1 with 0 < p < 1 (rows:
    models, columns: p), from the runs' examples.npz.  None if there is no such run."""
    from rethinkgen_tf import dynamics as dyn
    runs = {}
    for p, res in pairs:
        t = p.tag
        if t.get("part") == "bc" and 0 < t["corrupt"] < 1 and res and "run_dir" in res:
            runs[(t["model"], t["corrupt"])] = res if results.diverged(res) else res["run_dir"]
    if not runs:
        return None
    models = sorted({m for m, _ in runs}, key=lambda m: (list(MODEL_NAMES).index(m)
                                                          if m in MODEL_NAMES else 99, m))
    ps = sorted({c for _, c in runs})
    fig, axes = plt.subplots(len(models), len(ps), figsize=(4.2 * len(ps), 3.4 * len(models) + 1),
                             squeeze=False, sharey=True, layout="constrained")
    numbers = {}
    for i, m in enumerate(models):
        for j, c in enumerate(ps):
            ax = axes[i][j]
            title = f"{MODEL_NAMES.get(m, m)}, p = {c:g}"
            d = runs.get((m, c))
            if isinstance(d, dict):  # a diverged run: its records stop at the divergence
                ax.set_title(title)
                ax.text(0.5, 0.5, f"diverged at epoch {d.get('diverged_epoch', '?')}",
                        ha="center", va="center", transform=ax.transAxes, color="C3")
                continue
            path = Path(d) / dyn.FILE if d else None
            if path is None or not path.exists():
                ax.set_title(title)
                ax.text(0.5, 0.5, "not run" if d is None else "no examples.npz",
                        ha="center", va="center", transform=ax.transAxes, color="gray")
                continue
            a = dyn.load(path)
            title += f" (n = {len(a['index']):,})"
            numbers.setdefault(m, {})[c] = _accuracy_panel(ax, a, title, legend=False)
            if i != len(models) - 1:
                ax.set_xlabel("")
            if j:
                ax.set_ylabel("")
    handles = [matplotlib.lines.Line2D([], [], color=CLEAN, label="clean examples, training label"),
               matplotlib.lines.Line2D([], [], color=NOISY, label="corrupted examples, training label"),
               matplotlib.lines.Line2D([], [], color=NOISY, ls="--",
                                       label="corrupted examples, original label")]
    fig.legend(handles=handles, loc="outside lower center", ncol=3)
    fig.suptitle("Figure 1 (b, c) runs: the whole training set re-evaluated after each epoch, "
                 "by example group (p: label corruption probability, n: training examples)")
    numbers["files"] = _save(fig, out_dir, "figure1_dynamics")
    return numbers


def kernel_curve(summary, path, more=()):
    """Test error of the Gaussian-kernel interpolant against the number of random conv filters
    (kernels.kernel_experiment's summary["curve"]), with the random-label run's and the ridge
    row's, beside the paper's CIFAR-10 numbers (17% with 32,000 filters, 15% with l2
    regularization).  `more`: [(name, summary)] of further runs on the same images (other
    filters or filter seeds), each in its own colour; summary's curve is then "Gaussian filters".
    Writes path (PNG) and the same name as PDF; returns the plotted numbers of summary's curve."""
    series = [("Gaussian filters" if more else "ours", summary), *more]
    colors = ["C0", "C1", "C4", "C5", "C6"]
    fig, ax = plt.subplots(figsize=(7.5, 4.8) if more else (7, 4.4))
    out, ys, rand, ticks = {}, [15.0, 17.0], [], {32000}
    for k, (name, s) in enumerate(series):
        rows = sorted(s["curve"], key=lambda r: r["filters"])
        f = [r["filters"] for r in rows]
        err = [100 * r["test_error"] for r in rows]
        color = colors[k % len(colors)]
        ridge_color = color if more else "C2"
        ax.plot(f, err, "o-", color=color, label=f"{name}: interpolant (ridge 0), true labels")
        # value labels: one curve above its points; further curves alternate lower left and upper
        # right, their ridge rows' labels to the right (close curves' labels stay apart)
        at, ridge_at = ((0, 7), "center"), ((-8, 0), "right") if more else ((0, -13), "center")
        if k:
            at, ridge_at = (((-6, -12), "right"), ((8, -7), "left")) if k % 2 else (((6, 5), "left"),
                                                                                  ((8, 3), "left"))
        for x, e in zip(f, err):
            ax.annotate(f"{e:.2f}%", (x, e), textcoords="offset points", xytext=at[0], ha=at[1],
                        fontsize=7, color=color)
        rnd = [100 * r["random_test_error"] for r in rows if r.get("random_test_error") is not None]
        ridge = [(r["filters"], 100 * r["ridge_test_error"]) for r in rows
                 if r.get("ridge_test_error") is not None]
        if ridge:  # hollow diamonds, labelled apart from the interpolant's
            ax.plot(*zip(*ridge), "D", mfc="none", mew=1.5, ms=7, color=ridge_color,
                    label=f"{name}: with the validated ridge (l2)")
            for x, e in ridge:
                ax.annotate(f"{e:.2f}%", (x, e), textcoords="offset points", xytext=ridge_at[0],
                            ha=ridge_at[1], va="center" if more else "baseline", fontsize=7, color=ridge_color)
        rand += rnd
        ticks |= set(f)
        ys += err + [e for _, e in ridge]
        if k == 0:
            out = dict(filters=f, test_error=err, random_test_error=rnd, ridge_test_error=[e for _, e in ridge])
    for y, color, text in ((17, "k" if more else "C0", "paper: 17% (32,000 filters)"),
                           (15, "k" if more else "C2", "paper: 15% (32,000 filters, l2)")):
        ax.plot([32000], [y], "*", color=color, ms=13, mec="k", label=text)
        ax.annotate(text, (32000, y), textcoords="offset points", xytext=(-10, 0),
                    ha="right", va="center", fontsize=8, color=color)
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted(ticks))
    if more:  # room for the value labels left of the first points and right of the last
        ax.set_xlim(min(ticks) / 1.45, 32000 * 1.4)
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:,.0f}"))
    ax.tick_params(axis="x", labelsize=7)
    ax.set_ylim(np.floor(min(ys)) - 1, np.ceil(max(ys)) + 1.5)  # the differences, not 0-100
    ax.grid(alpha=0.3)
    ax.set_xlabel("random conv filters")
    ax.set_ylabel("test error (%)")
    if rand:
        ax.text(0.02, 0.97, f"random labels (not drawn): training error 0, test error "
                f"{min(rand):.1f}-{max(rand):.1f}% at every filter count (chance: 90%)",
                transform=ax.transAxes, fontsize=7, color="C3", va="top")
    seeds = ("each curve one filter seed (the first F filters of one draw)" if more else
             f"one filter seed (seed {summary.get('seed', '?')}: the first F filters of one draw)")
    ax.set_title(f"CIFAR-10, Gaussian kernel on random conv features: n = {summary['n']:,}, "
                 f"{summary['test_n']:,} test images,\n{seeds}", fontsize=9)
    ax.legend(fontsize=7, loc="lower left" if more else "center right")
    path = Path(path)
    _save(fig, path.parent, path.stem)
    return out
