"""Issue 27 items 6 and 7: what the extension build dashboards and the Extensions Index need.

- memory is told without psutil on every platform (the dashboards install nothing);
- the module's self-test needs neither torch nor psutil and asserts on no wall-clock time;
- the screenshot listed for the index is honestly named and captioned an offscreen Qt render.
"""
from __future__ import annotations

import ast
import builtins
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULE_FILE = ROOT / "InterSliceSR" / "InterSliceSR.py"
sys.path.insert(0, str(ROOT / "InterSliceSR"))

from intersr.runners import memory  # noqa: E402

VM_STAT = """Mach Virtual Memory Statistics: (page size of 16384 bytes)
Pages free:                               12000.
Pages active:                            300000.
Pages inactive:                          100000.
Pages speculative:                         3000.
Pages wired down:                         90000.
"""


@pytest.fixture
def no_psutil(monkeypatch):
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "psutil":
            raise ImportError("no psutil on this dashboard")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)


def test_memory_without_psutil_on_this_system(no_psutil):
    value = memory.available_bytes()
    assert value is not None and value > 2**20


def test_memory_without_psutil_on_macos_reads_vm_stat(no_psutil, monkeypatch):
    assert memory._vm_stat_available(VM_STAT) == 16384 * (12000 + 100000 + 3000)
    monkeypatch.setattr(memory.sys, "platform", "darwin")
    monkeypatch.setattr(memory, "_vm_stat_available", lambda text=None: 123 * 2**20)
    assert memory.available_bytes() == 123 * 2**20


def test_memory_without_psutil_on_windows_asks_the_kernel(no_psutil, monkeypatch):
    monkeypatch.setattr(memory.sys, "platform", "win32")
    monkeypatch.setattr(memory, "_windows_available", lambda: 7 * 2**30)
    assert memory.available_bytes() == 7 * 2**30


def test_unknown_memory_skips_the_check_instead_of_failing(no_psutil, monkeypatch):
    from intersr.volumes.grid import Grid  # noqa: F401  (the check's own type)

    monkeypatch.setattr(memory.sys, "platform", "sunos5")
    monkeypatch.setattr(memory, "_meminfo_available", lambda: None)
    monkeypatch.setattr(memory, "_sysconf_available", lambda: None)
    assert memory.available_bytes() is None

    class TinyGrid:
        output_size = (4, 4, 4)
        input_size = (4, 4, 2)

    assert memory.check(TinyGrid()) == memory.required_bytes(TinyGrid())


def _test_class():
    tree = ast.parse(MODULE_FILE.read_text(encoding="utf-8"))
    return next(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == "InterSliceSRTest")


def test_self_test_asserts_on_no_wall_clock_time():
    """A loaded build machine takes any time: the self-test checks states, never durations
    (a deadline that ends a wait is fine; an assertion on elapsed time is not)."""
    asserts = [n for n in ast.walk(_test_class()) if isinstance(n, ast.Call)
               and isinstance(n.func, ast.Attribute) and n.func.attr.startswith("assert")]
    assert asserts
    timed = [ast.unparse(n) for n in asserts if any(word in ast.unparse(n) for word in
                                                   ("time.", "monotonic", "started", "elapsed", "seconds"))]
    assert timed == []


def test_self_test_needs_neither_torch_nor_psutil():
    source = ast.unparse(_test_class())
    assert "psutil" not in source and "import torch" not in source
    run = next(n for n in _test_class().body if isinstance(n, ast.FunctionDef) and n.name == "runTest")
    assert "torch_installed()" in ast.unparse(run) and "_runWithoutTorch" in ast.unparse(run)
