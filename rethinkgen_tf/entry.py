"""What every command-line entry point shares: a quiet TensorFlow import, and
errors as one line.

    from rethinkgen_tf import entry
    entry.run(main)        # absl app.run: bad flags, errors, Ctrl-C -> one line

Loading TensorFlow prints C++ log lines on some CPUs:

On CPUs where TensorFlow turns oneDNN on by default (AVX-512 VNNI/BF16, AMX),
loading its two shared libraries prints, before absl logging is initialized
and so whatever TF_CPP_MIN_LOG_LEVEL says, two pairs of lines:

    WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
    I0000 00:00:... port.cc:153] oneDNN custom operations are on. ...

`import_tensorflow()` loads TensorFlow with file descriptor 2 pointed at a
temporary file, then writes back to stderr every line it caught except those
(so real errors during the import still reach the user).  It changes nothing
about oneDNN itself: see BUILD.md for what oneDNN changes and how to choose.
The entry-point packages (`experiments`, `benchmarks`) call it first, so every
command shows only our output.

`run(main)` is absl's `app.run` with the project's error contract: a bad
flag, an invalid setting, missing or damaged data or state, a locked run
directory, a full disk or Ctrl-C each end the program with one line on stderr
(`error: ...`, exit 1; `interrupted; ...`, exit 130) and no traceback.
"""
import contextlib
import errno
import os
import re
import sys
import tempfile

NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|[IW]\d{4} [\d:. ]+\d+ port\.cc:\d+\] oneDNN custom operations are on"
    r"|[IW]\d{4} [\d:. ]+\d+ cpu_feature_guard\.cc:\d+\] "
    r"|To enable the following instructions: .*rebuild TensorFlow with the appropriate)")


def is_noise(line):
    """Whether a stderr line is one of TensorFlow's load-time log lines."""
    return bool(NOISE.match(line))


def import_tensorflow():
    """`import tensorflow`, minus its load-time log lines on stderr; returns the module."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no usable fd 2: nothing to hide
        import tensorflow
        return tensorflow
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            import tensorflow
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            text = caught.read().decode(errors="replace")
            kept = [line for line in text.splitlines(keepends=True) if not is_noise(line)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()
    return tensorflow


def fail(message, code=1):
    """Ends the program with one line on stderr, skipping interpreter teardown
    (after a failed write TensorFlow's and h5py's finalizers can crash it)."""
    sys.stdout.flush()
    sys.stderr.write(message.rstrip().replace("\n", " ") + "\n")
    sys.stderr.flush()
    os._exit(code)


def one_line(e):
    """The message of an exception, as the one line the user sees."""
    if isinstance(e, KeyboardInterrupt):
        return "interrupted; rerun the same command to resume"
    if _is_enospc(e):
        filename = getattr(e, "filename", None)
        where = f" writing {filename}" if filename else ""
        return (f"error: the disk is full{where}; free some space and rerun the same "
                "command to resume (finished epochs are kept)")
    if isinstance(e, OSError) and e.strerror and e.filename:
        return f"error: {e.filename}: {e.strerror}"
    return f"error: {e}"


@contextlib.contextmanager
def errors():
    """Turns the errors a user can cause or fix into one line and an exit code."""
    from rethinkgen_tf.data import DataError
    try:
        yield
    except BrokenPipeError:  # the reader of our output went away (| head): nothing to say
        os._exit(1)
    except KeyboardInterrupt as e:
        fail(one_line(e), 130)
    except (ValueError, DataError, OSError) as e:
        fail(one_line(e))
    except Exception as e:  # TensorFlow's and h5py's own errors: one line if a full disk
        if _is_enospc(e):
            fail(one_line(e))
        raise


def _is_enospc(e):
    """Whether an error is a full disk: an OSError with errno ENOSPC, or an error from
    TensorFlow or h5py whose text says so."""
    if isinstance(e, KeyboardInterrupt):
        return False
    if isinstance(e, ValueError) and not isinstance(e, OSError):
        return False  # our own messages (settings, data, state) are shown as they are
    text = str(e)
    return getattr(e, "errno", None) == errno.ENOSPC or "No space left" in text \
        or "errno = 28" in text or "ENOSPC" in text


HELP = ("-?", "-h", "--help", "--helpshort", "--helpfull", "--helpxml")


def run(main):
    """absl's app.run(main) with one-line flag errors and `errors()` around main."""
    from absl import app, flags

    def parse(argv):
        try:
            return flags.FLAGS(argv)
        except flags.Error as e:
            fail(f"error: {e} (see --help)")
        except BrokenPipeError:  # --help | head
            os._exit(0)
        except SystemExit:  # absl's --help/--helpshort/--helpfull print, then exit 1
            if any(a.split("=")[0] in HELP for a in argv[1:]):
                sys.stdout.flush()
                os._exit(0)
            raise

    def guarded(argv):
        with errors():
            return main(argv)

    app.run(guarded, flags_parser=parse)


def run_with_flags(fn):
    """`run` for an entry point that is flags plus one call: fn(**flags), each of fn's
    parameters that names a flag read from it (the others keep their defaults).  Extra
    command-line arguments are one line."""
    import inspect

    from absl import flags

    def main(argv):
        if len(argv) > 1:
            fail(f"error: unexpected arguments {argv[1:]}")
        F = flags.FLAGS
        fn(**{name: F[name].value for name in inspect.signature(fn).parameters if name in F})

    run(main)

