# Every entry point below starts here: TensorFlow is loaded without its C++
# load-time log lines (rethinkgen_tf.entry), so a command prints only our output.
from rethinkgen_tf.entry import import_tensorflow

import_tensorflow()
