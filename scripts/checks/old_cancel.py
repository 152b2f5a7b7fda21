import sys, time, os, builtins, pathlib, tempfile
mode = sys.argv[1]
if mode == "no-psutil":
    real = builtins.__import__
    def imp(n, *a, **k):
        if n == "psutil": raise ImportError
        return real(n, *a, **k)
    builtins.__import__ = imp
sys.path.insert(0, os.environ["OLD_LIB"])
import subprocess
import InterSliceSRLib.engine_process as ep
ep._launch = lambda args, cwd, env: subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, cwd=cwd, env={**os.environ, **env})
H = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "Testing", "helpers")
pid = pathlib.Path(tempfile.mkdtemp()) / "p"
p = ep.EngineProcess([sys.executable, H + "/launcher_with_child.py", sys.executable, H + "/child_engine.py", str(pid)])
while not pid.exists(): time.sleep(0.01)
child = int(pid.read_text())
t = time.monotonic(); p.terminate(); dt = time.monotonic() - t
st = open(f"/proc/{child}/stat").read().split(") ")[1][0] if os.path.exists(f"/proc/{child}") else "gone"
print(mode, "terminate blocked", round(dt, 3), "s; child state:", st)
os.kill(child, 9) if st not in ("gone", "Z") else None
