"""A long-running child for the process-tree tests: writes its pid to argv[1], then prints
one line every 20 ms forever. With ``--ignore-term`` it ignores SIGTERM (a stuck engine)."""
import os
import signal
import sys
import time

if __name__ == "__main__":
    if "--ignore-term" in sys.argv:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with open(sys.argv[1] + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.replace(sys.argv[1] + ".tmp", sys.argv[1])
    i = 0
    while True:
        print('{"stage": "adapt", "step": %d, "steps": 1000000}' % i, flush=True)
        i += 1
        time.sleep(0.02)
