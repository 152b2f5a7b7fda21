"""Run the engine (or any helper command) in a background process tree and collect its events.

Why not ``slicer.util.launchConsoleProcess``: it opens the pipe in text mode with the locale's
code page (one undecodable byte ends a reader loop on Windows) and gives no handle on the
process tree. Inside Slicer the command is ``PythonSlicer``, a *launcher* whose child is the
real Python; terminating the launcher alone leaves the child running. So this module:

- starts the command in its own session / process group (POSIX) or process group (Windows),
  with the console hidden on Windows, stderr merged into stdout (as launchConsoleProcess does);
- reads the pipe as bytes and decodes each line on its own (UTF-8, the child is told
  ``PYTHONIOENCODING=utf-8``; bad bytes are replaced), so nothing after a bad byte is lost;
- stops the whole tree without blocking the caller: ``request_stop()`` signals the group and
  returns at once; a reaper thread escalates to SIGKILL after a grace period; ``finished``
  turns True once every process of the tree is gone and the output is read.

Works with and without psutil (psutil, when present, also catches descendants that left the
process group). No Qt here: the owner drains ``events()`` from its own thread.
"""
from __future__ import annotations

import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time

from intersr import options
from intersr.protocol import parse_line

MODULE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # .../InterSliceSR

# Seconds between the polite stop (SIGTERM: the engine removes its partial output) and SIGKILL.
STOP_GRACE_SECONDS = 0.5


def python_executable() -> str:
    """PythonSlicer inside Slicer (Slicer's own Python, no GUI); this interpreter otherwise."""
    try:
        import slicer

        in_slicer_app = getattr(slicer, "app", None) is not None
    except ImportError:  # pragma: no cover - slicer-core is a test dependency
        in_slicer_app = False
    if in_slicer_app:
        found = shutil.which("PythonSlicer")
        if found:
            return found
    return sys.executable


def build_engine_args(input_path, output_path, run_options=None, *, python=None, **values) -> list:
    """The full command line (list of str) for one engine run.

    ``run_options``: an ``intersr.options.RunOptions``; or give option values by name
    (``spacing=1.25, budget="best"``). The flags come from the engine's one declaration
    (``intersr.options``): invalid values raise ``intersr.errors.InputError`` (a ValueError).
    """
    if run_options is None:
        run_options = options.make(**values)
    elif values:
        raise ValueError("give RunOptions or option values, not both")
    return [python or python_executable(), "-m", "intersr", "run", str(input_path),
            str(output_path), *options.engine_args(run_options), "--progress", "jsonl"]


def build_fuse_args(stack_paths, output_path, run_options, *, python=None, thicknesses=()) -> list:
    """The command line for one ``intersr fuse`` run: the stacks (the first is the reference),
    the run options fusion takes (``intersr.options.FUSE_OPTIONS``), per-stack thicknesses."""
    args = [python or python_executable(), "-m", "intersr", "fuse", *map(str, stack_paths),
            "--output", str(output_path),
            *options.engine_args(run_options, only=options.FUSE_OPTIONS), "--progress", "jsonl"]
    if any(thicknesses):
        args += ["--thickness", ",".join(f"{t or 0:g}" for t in thicknesses)]
    return args


def engine_environment(extra=None) -> dict:
    """Variables added to the child's environment: the module folder on PYTHONPATH (so that
    ``-m intersr`` resolves to the engine shipped beside this file), unbuffered UTF-8 output."""
    paths = [MODULE_DIR]
    existing = os.environ.get("PYTHONPATH")
    if existing:
        paths.append(existing)
    env = {"PYTHONPATH": os.pathsep.join(paths), "PYTHONUNBUFFERED": "1", "PYTHONIOENCODING": "utf-8"}
    if extra:
        env.update(extra)
    return env


def launch(args, cwd=None, update_environment=None) -> subprocess.Popen:
    """Start ``args`` as the leader of a new process group, stdout+stderr in one binary pipe."""
    env = os.environ.copy()
    env.update(update_environment or {})
    kwargs = dict(stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                  env=env, cwd=cwd)
    if os.name == "nt":  # pragma: no cover - exercised on Windows only
        info = subprocess.STARTUPINFO()
        info.dwFlags |= subprocess.STARTF_USESHOWWINDOW
        info.wShowWindow = 0  # hidden console, as slicer.util.launchConsoleProcess does
        kwargs.update(startupinfo=info, creationflags=subprocess.CREATE_NEW_PROCESS_GROUP)
    else:
        kwargs.update(start_new_session=True)  # its own process group: killpg reaches every child
    return subprocess.Popen(args, **kwargs)


def decode_line(raw: bytes) -> str:
    """One line of child output -> text. UTF-8 first (what the child is told to write), the
    bad bytes replaced, so a stray byte costs one character and never the rest of the stream."""
    return raw.decode("utf-8", errors="replace")


class EngineProcess:
    """One running process tree: ``events()`` drains what the reader thread parsed."""

    def __init__(self, args, cwd=None, env=None):
        self.args = list(args)
        self.events_queue: queue.Queue = queue.Queue()
        self._stop_requested = threading.Event()
        self._tree_gone = threading.Event()
        self.proc = launch(self.args, cwd, engine_environment(env))
        self.pid = self.proc.pid
        self._psutil_tree = _PsutilTree(self.proc.pid)
        self._reader = threading.Thread(target=self._read, name="InterSliceSR-reader", daemon=True)
        self._reader.start()
        self._reaper = None

    def _read(self) -> None:
        stream = self.proc.stdout
        try:
            for raw in iter(stream.readline, b""):
                self.events_queue.put(parse_line(decode_line(raw)))
        except (ValueError, OSError):  # stream closed while terminating
            pass
        finally:
            try:
                stream.close()
            except Exception:
                pass

    def events(self) -> list:
        """All events parsed since the last call (non-blocking)."""
        out = []
        while True:
            try:
                out.append(self.events_queue.get_nowait())
            except queue.Empty:
                return out

    @property
    def stopping(self) -> bool:
        return self._stop_requested.is_set()

    @property
    def finished(self) -> bool:
        """True when the process (and, after a stop, its whole tree) is gone and its output read."""
        if self.proc.poll() is None or self._reader.is_alive():
            return False
        return self._tree_gone.is_set() if self.stopping else True

    @property
    def returncode(self):
        return self.proc.returncode

    def wait_finished(self, timeout=None) -> bool:
        """Block until ``finished`` (or ``timeout``); for console use and tests, never the GUI."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.finished:
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def request_stop(self, grace_seconds: float = STOP_GRACE_SECONDS) -> None:
        """Ask the whole tree to stop and return at once (the GUI thread calls this)."""
        if self._stop_requested.is_set():
            return
        self._stop_requested.set()
        # Everything else (listing descendants, signalling, taskkill on Windows) happens in the
        # reaper thread: the caller's thread only starts it.
        self._reaper = threading.Thread(target=self._reap, args=(grace_seconds,),
                                        name="InterSliceSR-reaper", daemon=True)
        self._reaper.start()

    def terminate(self, grace_seconds: float = STOP_GRACE_SECONDS, timeout: float = 10.0) -> bool:
        """Stop the tree and wait until it is gone (console use). True when it is."""
        self.request_stop(grace_seconds)
        return self.wait_finished(timeout)

    def _reap(self, grace_seconds: float) -> None:
        self._psutil_tree.snapshot()
        _signal_tree(self.proc, signal.SIGTERM, self._psutil_tree)
        deadline = time.monotonic() + grace_seconds
        while time.monotonic() < deadline:
            self.proc.poll()
            self._psutil_tree.snapshot()
            if not _tree_alive(self.proc, self._psutil_tree):
                break
            time.sleep(0.05)
        else:
            _signal_tree(self.proc, _KILL, self._psutil_tree)
            kill_deadline = time.monotonic() + 5.0
            while time.monotonic() < kill_deadline:
                self.proc.poll()
                if not _tree_alive(self.proc, self._psutil_tree):
                    break
                time.sleep(0.05)
        try:
            self.proc.wait(timeout=1.0)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL could not end it
            pass
        self._tree_gone.set()


_KILL = getattr(signal, "SIGKILL", signal.SIGTERM)


class _PsutilTree:
    """Descendants seen so far (psutil only): they may have left the process group."""

    def __init__(self, pid: int):
        try:
            import psutil
        except ImportError:
            psutil = None
        self.psutil = psutil
        self.pid = pid
        self.known: dict = {}

    def snapshot(self) -> None:
        if self.psutil is None:
            return
        try:
            for child in self.psutil.Process(self.pid).children(recursive=True):
                self.known.setdefault(child.pid, child)
        except self.psutil.Error:
            pass

    def alive(self) -> list:
        if self.psutil is None:
            return []
        out = []
        for proc in self.known.values():
            try:
                if proc.is_running() and proc.status() != self.psutil.STATUS_ZOMBIE:
                    out.append(proc)
            except self.psutil.Error:
                pass
        return out


def _signal_tree(proc: subprocess.Popen, sig, tree: _PsutilTree) -> None:
    """Send ``sig`` to the process group (POSIX) / the tree (Windows) and known descendants."""
    if os.name == "nt":  # pragma: no cover - exercised on Windows only
        if sig == _KILL or tree.psutil is None:
            # taskkill /T walks the tree from the launcher (no psutil needed)
            subprocess.run(["taskkill", "/F", "/T", "/PID", str(proc.pid)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        else:
            for child in tree.alive():
                try:
                    child.terminate()
                except tree.psutil.Error:
                    pass
            if proc.poll() is None:
                proc.terminate()
        return
    try:
        os.killpg(proc.pid, sig)  # the launcher started a new session: pgid == its pid
    except (ProcessLookupError, PermissionError):
        pass
    for child in tree.alive():
        try:
            child.send_signal(sig)
        except tree.psutil.Error:
            pass


def _tree_alive(proc: subprocess.Popen, tree: _PsutilTree) -> bool:
    if proc.poll() is None or tree.alive():
        return True
    if os.name == "nt":  # pragma: no cover
        return False
    return _group_alive(proc.pid)


def _group_alive(pgid: int) -> bool:
    """Is a live (non-zombie) process left in process group ``pgid``? Zombies count as gone:
    an orphan's zombie waits for an init that may never reap it, but it runs no code."""
    if os.path.isdir("/proc/self"):  # Linux: read the group and state of every process
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    stat = f.read()
            except OSError:
                continue
            fields = stat[stat.rfind(b")") + 2:].split()  # after "pid (comm) "
            if len(fields) > 2 and int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
                return True
        return False
    try:  # macOS: any member of the group (zombies included) left?
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def kill_process_tree(proc: subprocess.Popen, grace_seconds: float = STOP_GRACE_SECONDS) -> None:
    """Blocking stop of a process started by ``launch`` and all of its descendants."""
    tree = _PsutilTree(proc.pid)
    tree.snapshot()
    _signal_tree(proc, signal.SIGTERM, tree)
    deadline = time.monotonic() + grace_seconds
    while _tree_alive(proc, tree) and time.monotonic() < deadline:
        time.sleep(0.02)
    if _tree_alive(proc, tree):
        _signal_tree(proc, _KILL, tree)
    proc.wait()
