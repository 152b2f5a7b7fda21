"""Process-tree cancel, per-line decoding and launch races of InterSliceSRLib.engine_process,
with REAL processes: a launcher that starts the real command as its child, as PythonSlicer
does (Testing/helpers/launcher_with_child.py), with and without psutil.
"""
from __future__ import annotations

import builtins
import os
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HELPERS = ROOT / "Testing" / "helpers"
sys.path.insert(0, str(ROOT / "InterSliceSR"))

from InterSliceSRLib import engine_process  # noqa: E402
from InterSliceSRLib.engine_process import EngineProcess  # noqa: E402

LAUNCHER = [sys.executable, str(HELPERS / "launcher_with_child.py")]
GUI_BLOCK_LIMIT_S = 0.100   # no call made from the GUI thread may take longer than this
TREE_GONE_LIMIT_S = 2.0     # launcher and child gone within this after Cancel


def running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's zombie runs no code)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2:].split()[0] not in (b"Z", b"X")


@pytest.fixture(params=["psutil", "no-psutil"])
def psutil_mode(request, monkeypatch):
    """Run each test with psutil importable and with ``import psutil`` failing."""
    if request.param == "no-psutil":
        real_import = builtins.__import__

        def no_psutil(name, *args, **kwargs):
            if name == "psutil" or name.startswith("psutil."):
                raise ImportError("psutil hidden for this test")
            return real_import(name, *args, **kwargs)

        monkeypatch.setattr(builtins, "__import__", no_psutil)
    return request.param


def wait_for_file(path: Path, timeout=20.0) -> int:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, "the child never started"
        time.sleep(0.01)
    return int(path.read_text())


def stop_like_the_gui(proc: EngineProcess):
    """Request the stop, then poll ``finished`` every 10 ms as the GUI's timer would; return
    (longest single call, seconds until the tree is gone)."""
    t0 = time.monotonic()
    proc.request_stop()
    longest = time.monotonic() - t0
    while True:
        t = time.monotonic()
        done = proc.finished
        proc.events()
        longest = max(longest, time.monotonic() - t)
        if done:
            return longest, time.monotonic() - t0
        assert time.monotonic() - t0 < 15, "the process tree never went away"
        time.sleep(0.01)


@pytest.mark.skipif(os.name == "nt", reason="POSIX process groups; Windows uses taskkill /T")
@pytest.mark.parametrize("stubborn", [False, True], ids=["polite-child", "child-ignores-SIGTERM"])
def test_cancel_stops_launcher_and_child_fast_without_blocking(tmp_path, psutil_mode, stubborn):
    pidfile = tmp_path / "child.pid"
    args = LAUNCHER + [sys.executable, str(HELPERS / "child_engine.py"), str(pidfile)]
    if stubborn:
        args.append("--ignore-term")
    proc = EngineProcess(args)
    child = wait_for_file(pidfile)
    assert child != proc.pid and running(child) and running(proc.pid)
    time.sleep(0.1)
    assert any(e.get("stage") == "adapt" for e in proc.events())  # the child's output arrives

    longest, gone_after = stop_like_the_gui(proc)

    assert not running(child), "the launcher's child survived the cancel"
    assert not running(proc.pid)
    assert gone_after < TREE_GONE_LIMIT_S, gone_after
    assert longest < GUI_BLOCK_LIMIT_S, longest


@pytest.mark.skipif(os.name == "nt", reason="POSIX process groups; Windows uses taskkill /T")
def test_cancel_within_milliseconds_of_launch(tmp_path, psutil_mode):
    """Stop requested before the launcher has started its child: the child that the launcher
    may still start belongs to the same process group and is stopped too."""
    for attempt in range(5):
        pidfile = tmp_path / f"child{attempt}.pid"
        proc = EngineProcess(LAUNCHER + [sys.executable, str(HELPERS / "child_engine.py"), str(pidfile)])
        longest, gone_after = stop_like_the_gui(proc)
        assert longest < GUI_BLOCK_LIMIT_S and gone_after < TREE_GONE_LIMIT_S
        time.sleep(0.3)  # a child started late would have written its pid by now
        if pidfile.exists():
            assert not running(int(pidfile.read_text()))


def test_blocking_terminate_for_console_use(tmp_path, psutil_mode):
    pidfile = tmp_path / "child.pid"
    proc = EngineProcess(LAUNCHER + [sys.executable, str(HELPERS / "child_engine.py"), str(pidfile)])
    child = wait_for_file(pidfile)
    assert proc.terminate(timeout=TREE_GONE_LIMIT_S)
    assert not running(child) and proc.finished


def test_one_undecodable_byte_loses_nothing_after_it(tmp_path):
    """The child writes a byte that is not UTF-8 (e.g. a Windows code-page path) between JSON
    events; every later event still arrives and the child never sees a broken pipe."""
    script = tmp_path / "bad_bytes.py"
    script.write_text(
        "import sys\n"
        "out = sys.stdout.buffer\n"
        "out.write(b'{\"stage\": \"load\", \"step\": 1, \"steps\": 1}\\n')\n"
        "out.write(b'reading C:\\\\Users\\\\J\\xf6rg\\\\scan.nrrd\\n')\n"          # latin-1 byte
        "out.write(b'caf\\xc3\\xa9 \\xe6\\x96\\x87 ok\\n')\n"                        # valid UTF-8
        "out.write(b'{\"stage\": \"adapt\", \"step\": 2, \"steps\": 4}\\r\\n')\n"
        "out.write(b'{\"stage\": \"done\", \"output\": \"x\", \"seconds\": 1.0}\\n')\n"
        "out.flush()\n")
    proc = EngineProcess([sys.executable, str(script)])
    assert proc.wait_finished(timeout=30) and proc.returncode == 0
    events = proc.events()
    assert [e["stage"] for e in events] == ["load", "log", "log", "adapt", "done"]
    assert events[1]["message"] == "reading C:\\Users\\J\ufffdrg\\scan.nrrd"
    assert events[2]["message"] == "café 文 ok"
    assert events[3]["step"] == 2


def test_engine_environment_asks_for_utf8_output():
    env = engine_process.engine_environment()
    assert env["PYTHONIOENCODING"] == "utf-8" and env["PYTHONUNBUFFERED"] == "1"
    assert env["PYTHONPATH"].split(os.pathsep)[0] == engine_process.MODULE_DIR
