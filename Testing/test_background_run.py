"""A well-behaved background run: `--parent-pid` (the engine ends within 5 s, leaving nothing,
when the launching process dies), lower priority, one core left free, an uncompressed
temporary result, an ETA that follows the time budget."""
from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import ROOT
from intersr import options
from intersr.cli import app as cli

ENV = {**os.environ, "PYTHONPATH": str(ROOT / "InterSliceSR")}
posix_only = pytest.mark.skipif(os.name == "nt", reason="POSIX process control in the test")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
        return stat[stat.rfind(b")") + 2:][:1] not in (b"Z", b"X")
    except OSError:
        return True


PARENT = textwrap.dedent("""
    import os, subprocess, sys, time
    engine = subprocess.Popen([sys.executable, "-m", "intersr", "run", sys.argv[1], sys.argv[2],
                               "--adapt-seconds", "300", "--device", "cpu", "--progress", "jsonl",
                               "--parent-pid", str(os.getpid())],
                              stdout=open(sys.argv[3], "w"), stderr=open(sys.argv[3] + ".err", "w"),
                              start_new_session=True)
    print(engine.pid, flush=True)
    time.sleep(600)
""")


@posix_only
def test_engine_ends_within_5_s_when_its_parent_is_killed(tmp_path, small_volume):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    events = tmp_path / "events.jsonl"
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(small_volume),
                               str(out_dir / "iso.nrrd"), str(events)],
                              stdout=subprocess.PIPE, text=True, env=ENV)
    engine = int(parent.stdout.readline())
    try:
        deadline = time.monotonic() + 120
        while '"adapt"' not in (events.read_text() if events.exists() else ""):
            assert time.monotonic() < deadline, "the engine never started adapting"
            assert alive(engine), (events.read_text(), Path(str(events) + ".err").read_text())
            time.sleep(0.2)
        import psutil

        assert psutil.Process(engine).nice() >= 10  # lower priority than its parent
        parent.kill()
        parent.wait()
        killed = time.monotonic()
        while alive(engine) and time.monotonic() - killed < 10:
            time.sleep(0.05)
        gone_after = time.monotonic() - killed
    finally:
        if alive(engine):
            os.kill(engine, signal.SIGKILL)
        if parent.poll() is None:
            parent.kill()
    assert gone_after < 5.0, f"the engine outlived its parent by {gone_after:.1f} s"
    assert list(out_dir.iterdir()) == []
    last = json.loads(events.read_text().strip().splitlines()[-1])
    assert last["stage"] == "error" and "parent process" in last["message"]
    assert "following process" in Path(str(events) + ".err").read_text()


def test_parent_pid_of_an_ended_process_is_refused_at_once(tmp_path, small_volume, capsys):
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    started = time.monotonic()
    code = cli.main(["run", str(small_volume), str(tmp_path / "o.nrrd"), "--no-adapt",
                     "--parent-pid", str(ended.pid), "--progress", "none"])
    assert code == 2 and time.monotonic() - started < 5
    assert f"--parent-pid {ended.pid}: no such process" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["small.nrrd"]


def test_one_core_left_and_uncompressed_output(tmp_path, small_volume, monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    assert options.cpu_threads(options.make()) == 4
    assert options.cpu_threads(options.make(parent_pid=os.getpid())) == 3
    monkeypatch.setattr(os, "cpu_count", lambda: 1)
    assert options.cpu_threads(options.make(parent_pid=os.getpid())) == 1
    packed, plain = tmp_path / "packed.nrrd", tmp_path / "plain.nrrd"
    for target, extra in ((packed, []), (plain, ["--uncompressed"])):
        assert cli.main(["run", str(small_volume), str(target), "--no-adapt", "--progress", "none",
                         *extra]) == 0
    header = plain.read_bytes()[:2000].split(b"\n\n")[0]
    assert b"encoding: raw" in header
    assert b"encoding: gzip" in packed.read_bytes()[:2000].split(b"\n\n")[0]


def test_eta_follows_the_time_budget_not_the_step_cap(tmp_path, small_volume, monkeypatch):
    """A preset has both a time budget and a step cap: the ETA is whichever ends first."""
    monkeypatch.setitem(options.BUDGET_PRESETS, "fast",
                        {"cpu": options.Budget(6.0, 1_000_000), "cuda": options.Budget(6.0, 1_000_000)})
    stream = io.StringIO()
    from intersr.progress import Progress
    from intersr.runners.pipeline import run

    run(str(small_volume), str(tmp_path / "o.nrrd"),
        options.make(budget="fast", device="cpu", seed=0), Progress("jsonl", stream=stream, log=io.StringIO()))
    adapt = [e for e in map(json.loads, stream.getvalue().splitlines()) if e["stage"] == "adapt"]
    etas = [e["eta_s"] for e in adapt if "eta_s" in e and e["step"] < e["steps"]]
    assert len(etas) >= 2
    assert max(etas) <= 6.0  # the step cap alone would say hours
    assert etas[-1] < etas[0]


def test_watchdog_stops_when_the_run_ends(tmp_path):
    """An in-process run (the public API, tests) must not leave a watchdog behind."""
    import threading

    from intersr.cli import watchdog

    stop = watchdog.watch(os.getpid(), str(tmp_path / "o.nrrd"))
    assert any(t.name == "intersr-parent-watchdog" for t in threading.enumerate())
    stop.set()
    deadline = time.monotonic() + 5
    while any(t.name == "intersr-parent-watchdog" for t in threading.enumerate()):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert watchdog.parent_gone_reason() is None
