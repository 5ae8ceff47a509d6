"""Figures and tables from saved results (no training): PNG + PDF, Markdown + LaTeX.

Each function takes [(suite.Point, result or None)] as returned by
``suite.collect`` and an output directory, writes its files there, and
returns a dict of the key numbers it plotted.
"""
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from rethinkgen_tf import results  # noqa: E402
from rethinkgen_tf.grids import TABLE1, TABLE4  # noqa: E402

LABELS = {"none": "true labels", "labels": "random labels", "shuffled_pixels": "shuffled pixels",
          "random_pixels": "random pixels", "gaussian": "Gaussian"}
MODEL_NAMES = {"inception": "Inception", "inception_nobn": "Inception w/o BatchNorm",
               "alexnet": "AlexNet", "mlp_1x512": "MLP 1x512", "mlp_3x512": "MLP 3x512"}


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


def figure1(pairs, out_dir):
    """1a: training loss vs steps; 1b: normalized time to overfit; 1c: test error."""
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.2))
    numbers = {"a": {}, "b": {}, "c": {}}
    for p, res in pairs:
        t = p.tag
        if t["part"] != "a" or res is None:
            continue
        rows = _rows(res)
        axes[0].plot([r["step"] / 1000 for r in rows], [r["train_loss"] for r in rows],
                     label=LABELS[t["randomize"]])
        numbers["a"][t["randomize"]] = {"final_train_loss": rows[-1]["train_loss"] if rows else None,
                                        "overfit_step": res.get("overfit_step")}
    axes[0].set(xlabel="thousand steps", ylabel="average loss", title=f"(a) {_a_model(pairs)}")
    # Runs of (a) go on long after the loss is ~0: show up to twice the slowest time to overfit.
    fit = [v["overfit_step"] for v in numbers["a"].values() if v["overfit_step"]]
    if fit and len(fit) == len(numbers["a"]):
        axes[0].set_xlim(0, 2 * max(fit) / 1000)
    by_model = {}
    for p, res in pairs:
        t = p.tag
        if t["part"] == "bc" and res is not None:
            by_model.setdefault(t["model"], []).append((t["corrupt"], res))
    for model, runs in by_model.items():
        runs.sort(key=lambda x: x[0])
        base = dict(runs).get(0.0, {}).get("overfit_step")
        ps = [c for c, r in runs if r.get("overfit_step") and base]
        rel = [r["overfit_step"] / base for c, r in runs if r.get("overfit_step") and base]
        err = [1 - (r["final"] or {}).get("test_acc", float("nan")) for _, r in runs]
        name = MODEL_NAMES.get(model, model)
        axes[1].plot(ps, rel, "o-", label=name)
        axes[2].plot([c for c, _ in runs], err, "o-", label=name)
        numbers["b"][model] = dict(zip(ps, rel))
        numbers["c"][model] = dict(zip([c for c, _ in runs], err))
    axes[1].set(xlabel="label corruption", ylabel="time to overfit (relative)",
                title="(b) convergence slowdown")
    axes[2].set(xlabel="label corruption", ylabel="test error", title="(c) generalization error growth")
    for ax in axes:
        if ax.lines:
            ax.legend()
    numbers["files"] = _save(fig, out_dir, "figure1")
    return numbers


def _a_model(pairs):
    models = {p.tag.get("model") for p, _ in pairs if p.tag.get("part") == "a"}
    return ", ".join(MODEL_NAMES.get(m, m) for m in sorted(models)) or "no runs"


def _pct(x):
    return "—" if x is None else f"{100 * x:.2f}"


def table1(pairs, out_dir):
    """Markdown and LaTeX, ours beside the paper's numbers."""
    head = ["model", "random crop", "weight decay", "labels", "train (ours)", "test (ours)",
            "train (paper)", "test (paper)", "train size", "epochs"]
    lines = []
    for p, res in pairs:
        t = p.tag
        key = (t["model"], t["crop"], t["wd"], t["random_labels"])
        paper = TABLE1.get(key, (None, None))
        f = (res or {}).get("final") or {}
        lines.append([MODEL_NAMES.get(t["model"], t["model"]), "yes" if t["crop"] else "no",
                      "yes" if t["wd"] else "no", "random" if t["random_labels"] else "true",
                      _pct(f.get("train_eval_acc")) if res else "(not run)",
                      _pct(f.get("test_acc")) if res else "", f"{paper[0]:.2f}",
                      f"{paper[1]:.2f}", str(res["num_train"]) if res else "",
                      str(res["epochs"]) if res else ""])
    return _write_table(head, lines, out_dir, "table1")


def table4(pairs, out_dir):
    head = ["model", "regularizer", "train (ours)", "test (ours)", "train (paper)"]
    lines = []
    for p, res in pairs:
        t = p.tag
        paper = TABLE4.get((t["model"], t["regularizer"]))
        f = (res or {}).get("final") or {}
        lines.append([MODEL_NAMES.get(t["model"], t["model"]), t["regularizer"].replace("_", " "),
                      _pct(f.get("train_eval_acc")) if res else "(not run)",
                      _pct(f.get("test_acc")) if res else "",
                      "fails to converge" if paper is None else f"{paper:.2f}"])
    return _write_table(head, lines, out_dir, "table4")


def _write_table(head, lines, out_dir, name):
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    md = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    md += ["| " + " | ".join(row) + " |" for row in lines]
    tex = ["\\begin{tabular}{" + "l" * 4 + "r" * (len(head) - 4) + "}", "\\hline",
           " & ".join(head) + " \\\\", "\\hline"]
    tex += [" & ".join(c.replace("%", "\\%").replace("—", "--") for c in row) + " \\\\"
            for row in lines]
    tex += ["\\hline", "\\end{tabular}"]
    results.atomic_write(out_dir / f"{name}.md", "\n".join(md) + "\n")
    results.atomic_write(out_dir / f"{name}.tex", "\n".join(tex) + "\n")
    return {"markdown": "\n".join(md), "files": [str(out_dir / f"{name}.md"),
                                                 str(out_dir / f"{name}.tex")]}


def implicit(pairs, out_dir):
    """Figure 2b: train/test accuracy vs steps, best-so-far test accuracy shaded."""
    fig, axes = plt.subplots(1, len(pairs), figsize=(6 * len(pairs), 4.2), squeeze=False)
    numbers = {}
    for ax, (p, res) in zip(axes[0], pairs):
        name = MODEL_NAMES.get(p.tag["model"], p.tag["model"])
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
        numbers[p.tag["model"]] = {"final_test": test[-1] if test else None,
                                   "best_test": best[-1] if best else None}
    numbers["files"] = _save(fig, out_dir, "figure2b")
    return numbers
