"""A stand-in for PythonSlicer: a launcher process whose child runs the real command.

Like Slicer's CTK application launcher it starts the command as a separate child process,
waits for it and passes its exit code on; it does not forward signals, so terminating the
launcher alone leaves the child running (the defect the process-tree cancel must handle).
"""
import subprocess
import sys

if __name__ == "__main__":
    sys.exit(subprocess.call(sys.argv[1:]))
