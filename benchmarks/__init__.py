# Every entry point below starts here.  First, before anything slow: Ctrl-C or SIGTERM while
# the program starts ends it with one line (exit 130 / 143), not a traceback, when it runs as
# `python -m benchmarks.X` (sys.argv[0] is "-m" while the package imports; an interactive
# `import` keeps its own signal handling).  Then TensorFlow is loaded without its C++
# load-time log lines (rethinkgen_tf.entry), so a command prints only our output.
import sys

if sys.argv[:1] == ["-m"]:
    from rethinkgen_tf.entry import catch_signals_early

    catch_signals_early()

from rethinkgen_tf.entry import import_tensorflow  # noqa: E402

import_tensorflow()
