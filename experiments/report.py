"""The docs' reproduction numbers and figures from the committed records (no training).

    python -m experiments.report                  # fill the docs' tables, redraw docs/figures
    python -m experiments.report --check          # list every quoted number that disagrees
    python -m experiments.report --export=runs/figure1/RUN_DIR[,...] \
        --to=docs/results/figure1_cpu [--examples]   # commit a finished run's compact record

The records are docs/results/<experiment>/<run directory>/{config.json, metrics.csv,
result.json} (examples.npz with --examples, where a committed picture is drawn from it)
and the kernel and Theorem 1 summaries; docs/results.md describes the tree.
"""
import json

from absl import flags

from rethinkgen_tf import entry, report

flags.DEFINE_list("export", [], "Finished run directories (or summary JSON files) whose compact "
                  "record to copy into --to; nothing else is done.")
flags.DEFINE_string("to", None, "With --export: the experiment's directory under docs/results "
                    "(e.g. docs/results/figure1_paper).")
flags.DEFINE_bool("examples", False, "With --export: also copy examples.npz (at most "
                  f"{report.EXAMPLES_LIMIT >> 20} MiB), for a picture drawn from it.")
flags.DEFINE_bool("check", False, "Change nothing: print each disagreement between the docs and "
                  "the records, exit 1 if there is any.")
flags.DEFINE_bool("figures", True, "Also redraw docs/figures.")
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise ValueError(f"unexpected arguments {argv[1:]}")
    if FLAGS.export:
        if not FLAGS.to:
            raise ValueError("--export needs --to=docs/results/<experiment>")
        for p in report.export(FLAGS.export, FLAGS.to, examples=FLAGS.examples):
            print(f"report: exported {p}")
        return
    if FLAGS.to or FLAGS.examples:
        raise ValueError("--to and --examples go with --export")
    if FLAGS.check:
        found = report.problems()
        for line in found:
            print(line)
        if found:
            entry.fail(f"error: {len(found)} quoted number(s) disagree with docs/results; run "
                       "python -m experiments.report to regenerate the tables")
        print("report: every quoted number agrees with its record")
        return
    done = report.write_docs()
    figures = report.draw_figures() if FLAGS.figures else {}
    print(json.dumps({"regions": done, "figures": figures}, indent=1))
    left = report.problems()
    for line in left:
        print(line)
    if left:
        entry.fail(f"error: {len(left)} quoted number(s) outside the generated regions disagree with "
                   "docs/results: fix the prose (report.CLAIMS lists what each must say)")


if __name__ == "__main__":
    entry.run(main)
