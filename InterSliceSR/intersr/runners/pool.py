"""Run many independent command lines: a local pool of subprocesses, or tasks on a Ray cluster.

The pool knows nothing of what a task does (`intersr run` today, `intersr fuse` later): a task
is a command line that reports on stdout with the progress protocol (protocol.py) and says how
many CPU threads and GPUs it needs. Each runs in its own process (its own process group), so a
crash or a corrupt input fails that task only. Cancelling (Ctrl-C, SIGTERM) stops starting new
tasks and sends SIGTERM to the running ones, whose engine removes its partial output.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

from .. import protocol
from ..errors import InputError

STOP_GRACE_SECONDS = 10.0  # SIGTERM, then this long before SIGKILL
WORKER_MEMORY_BYTES = 2 << 30  # a default worker is sized for a run of about this much RAM
DEFAULT_THREADS = 2  # per CPU worker, when the machine has the cores: small steps scale no further


@dataclass
class Task:
    """One command line to run; `env` is added to the environment."""

    key: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    cpus: int = 1
    gpus: int = 0


@dataclass
class Outcome:
    """How a task ended: its exit code (None: never started), its last protocol event."""

    key: str
    returncode: Optional[int]
    seconds: float = 0.0
    final: Optional[dict] = None  # the task's `done` or `error` event
    stderr_tail: str = ""
    cancelled: bool = False

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and bool(self.final) and self.final.get("stage") == "done"

    def error(self) -> str:
        """The task's own message (its error event or last `error:` line), else why it died."""
        if self.cancelled:
            return "cancelled"
        if self.final and self.final.get("stage") == protocol.ERROR:
            return str(self.final.get("message"))
        lines = [line for line in self.stderr_tail.splitlines() if line.strip()]
        for line in reversed(lines):
            if "error:" in line:
                return line.split("error:", 1)[1].strip()
        if self.returncode is not None and self.returncode < 0:
            try:
                name = signal.Signals(-self.returncode).name
            except ValueError:
                name = f"signal {-self.returncode}"
            return f"killed by {name}" + (" (out of memory?)" if name == "SIGKILL" else "")
        tail = f": {lines[-1]}" if lines else ""
        return f"exit code {self.returncode}{tail}"


# ------------------------------------------------------------------------------ one task
class Running:
    """The processes started and not yet finished (so that a cancel can reach them)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._procs: set[subprocess.Popen] = set()
        self.stopping = threading.Event()

    def add(self, proc: subprocess.Popen) -> None:
        with self._lock:
            self._procs.add(proc)
        if self.stopping.is_set():
            terminate(proc, grace=0)

    def discard(self, proc: subprocess.Popen) -> None:
        with self._lock:
            self._procs.discard(proc)

    def stop_all(self, grace: float = STOP_GRACE_SECONDS) -> None:
        self.stopping.set()
        with self._lock:
            procs = list(self._procs)
        for proc in procs:
            _signal(proc, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in procs:
            terminate(proc, max(0.0, deadline - time.monotonic()))


def _signal(proc: subprocess.Popen, sig: int) -> None:
    try:
        if os.name == "posix":
            os.killpg(proc.pid, sig)  # its own session: the group reaches any child too
        elif sig == signal.SIGTERM:
            proc.terminate()
        else:
            proc.kill()
    except (ProcessLookupError, PermissionError, OSError):
        pass


def terminate(proc: subprocess.Popen, grace: float = STOP_GRACE_SECONDS) -> None:
    """SIGTERM (the engine then removes its partial output), SIGKILL after `grace` seconds."""
    if proc.poll() is not None:
        return
    _signal(proc, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        _signal(proc, signal.SIGKILL)
        proc.wait()


def execute(task: Task, running: Running | None = None) -> Outcome:
    """Run one task to its end; its stdout is read as protocol events, stderr kept for errors."""
    start = time.monotonic()
    if running is not None and running.stopping.is_set():
        return Outcome(task.key, None, cancelled=True)
    env = {**os.environ, **task.env}
    final = None
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(task.argv, stdout=subprocess.PIPE, stderr=err,
                                stdin=subprocess.DEVNULL, env=env,
                                start_new_session=os.name == "posix")
        if running is not None:
            running.add(proc)
        try:
            for raw in proc.stdout:
                event = protocol.parse_line(raw.decode("utf-8", "replace"))
                if event.get("stage") in protocol.TERMINAL:
                    final = event
            proc.wait()
        except BaseException:  # KeyboardInterrupt: a Ray cancel, or the caller's
            terminate(proc)
            raise
        finally:
            proc.stdout.close()
            if running is not None:
                running.discard(proc)
        err.seek(0)
        tail = err.read()[-4000:].decode("utf-8", "replace")
    cancelled = running is not None and running.stopping.is_set() and proc.returncode != 0
    return Outcome(task.key, proc.returncode, time.monotonic() - start, final, tail, cancelled)


# ------------------------------------------------------------------------------ sizing
def gpu_ids() -> list[str]:
    """The GPUs a task may use (CUDA_VISIBLE_DEVICES, else `nvidia-smi -L`); no torch import."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [v.strip() for v in visible.split(",") if v.strip() and v.strip() != "-1"]
    exe = shutil.which("nvidia-smi")
    if not exe:
        return []
    try:
        out = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(l for l in out.splitlines() if l.startswith("GPU "))]


def plan_workers(tasks: int, workers: int | None = None, threads: int | None = None,
                 gpus: Sequence[str] = ()) -> tuple[int, int]:
    """(workers, threads per worker): one job per GPU; on CPUs the cores shared out, within
    the memory available, so that workers never oversubscribe the machine."""
    cores = max(1, os.cpu_count() or 1)
    if workers is None:
        if gpus:
            workers = len(gpus)
        else:
            workers = max(1, cores // (threads or min(DEFAULT_THREADS, cores)))
            try:
                import psutil
                workers = max(1, min(workers, psutil.virtual_memory().available
                                     // WORKER_MEMORY_BYTES))
            except (ImportError, OSError):
                pass
    workers = max(1, min(workers, max(tasks, 1)))
    return workers, threads or max(1, cores // workers)


def thread_env(threads: int) -> dict[str, str]:
    """Environment that caps the libraries' own thread pools (numpy/scipy BLAS, OpenMP)."""
    return {name: str(threads) for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                             "OPENBLAS_NUM_THREADS")}


# ------------------------------------------------------------------------------ local pool
def run_local(tasks: Sequence[Task], workers: int, on_outcome: Callable[[Outcome], None],
              gpus: Sequence[str] = ()) -> None:
    """Run the tasks on `workers` local processes at a time; `on_outcome` as each finishes.

    With GPUs, each running task gets one (CUDA_VISIBLE_DEVICES), handed on when it ends.
    Interrupted (KeyboardInterrupt or any exception in the caller's thread): running tasks
    are terminated, the rest never start, and each still gets its outcome (cancelled).
    """
    running = Running()
    free = list(gpus)
    lock = threading.Lock()

    def work(task: Task) -> Outcome:
        gpu = None
        if gpus and task.gpus:
            with lock:
                gpu = free.pop(0) if free else gpus[0]
            task.env = {**task.env, "CUDA_VISIBLE_DEVICES": gpu}
        try:
            return execute(task, running)
        finally:
            if gpu is not None:
                with lock:
                    free.append(gpu)

    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="intersr-batch")
    futures = {pool.submit(work, task): task for task in tasks}
    reported: set[str] = set()
    try:
        for future in as_completed(futures):
            outcome = future.result()
            reported.add(outcome.key)
            on_outcome(outcome)
    except BaseException:
        running.stop_all()
        pool.shutdown(wait=True, cancel_futures=True)
        for future, task in futures.items():
            if task.key in reported:
                continue
            done = future.done() and not future.cancelled() and future.exception() is None
            outcome = future.result() if done else Outcome(task.key, None, cancelled=True)
            outcome.cancelled = outcome.cancelled or not outcome.ok
            on_outcome(outcome)
        raise
    pool.shutdown(wait=True)


# ------------------------------------------------------------------------------ Ray
def _ray():
    try:
        import ray
    except ImportError:
        raise InputError("--ray needs Ray: pip install 'intersr[ray]'") from None
    return ray


def run_ray(tasks: Sequence[Task], address: str, on_outcome: Callable[[Outcome], None]) -> None:
    """Each task a Ray task with its CPUs and GPUs; outcomes as they finish.

    `address`: "auto" uses the Ray instance this process has already started, else
    RAY_ADDRESS's cluster, else starts a local one; anything else is a cluster address. The
    nodes need the same Python environment and shared paths to the inputs and outputs.
    """
    ray = _ray()
    started = not ray.is_initialized()
    if started:
        try:
            ray.init(address=None if address == "auto" else address, include_dashboard=False,
                     log_to_driver=False, logging_level="WARNING")
        except (ConnectionError, ValueError, RuntimeError) as exc:
            raise InputError(f"cannot reach the Ray cluster at {address}: {exc}") from None
    # a task asks for what one node can give (else Ray waits for it forever): a GPU only
    # where the cluster has GPUs, at most the CPUs of its largest node
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive", True)]
    node_cpus = max([int(n.get("CPU", 0)) for n in nodes] or [1]) or 1
    has_gpus = any(n.get("GPU", 0) >= 1 for n in nodes)
    remote = ray.remote(execute)
    refs = {remote.options(num_cpus=min(t.cpus, node_cpus), num_gpus=t.gpus if has_gpus else 0,
                           max_retries=0).remote(t): t for t in tasks}
    pending = list(refs)
    try:
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            for ref in ready:
                try:
                    outcome = ray.get(ref)
                except Exception as exc:  # the worker died (e.g. out of memory): that task only
                    outcome = Outcome(refs[ref].key, -1, final={"stage": protocol.ERROR,
                                                                "message": f"Ray: {exc}"})
                on_outcome(outcome)
    except BaseException:
        for ref in pending:
            ray.cancel(ref)  # KeyboardInterrupt in the task: `execute` terminates its process
        ray.wait(pending, num_returns=len(pending), timeout=STOP_GRACE_SECONDS + 5)
        for ref in pending:
            on_outcome(Outcome(refs[ref].key, None, cancelled=True))
        raise
    finally:
        if started:
            ray.shutdown()
