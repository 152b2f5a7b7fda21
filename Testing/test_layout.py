"""The engine's layout keeps its promises: imports point down the layers, no cycles, small
folders and files, and `import intersr` (the public API) loads neither torch nor Qt/Slicer."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "InterSliceSR" / "intersr"
MODULE = PKG.parent / "InterSliceSR.py"
# lower imports from lower only; the top level ("") is the shared vocabulary
LAYER = {"": 0, "volumes": 1, "acquisition": 2, "networks": 2, "methods": 3, "runners": 4,
         "cli": 5, "bench": 5, "training": 5}


def engine_imports() -> dict[str, set[str]]:
    """module -> engine modules it imports (relative imports resolved; packages as X.__init__)."""
    graph = {}
    for path in PKG.rglob("*.py"):
        module = ".".join(path.relative_to(PKG).with_suffix("").parts)
        package = module.split(".")[:-1]
        found = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ImportFrom) or not node.level:
                continue
            base = package[:len(package) - (node.level - 1)]
            target = base + (node.module.split(".") if node.module else [])
            for candidate in [target] + [target + [a.name] for a in node.names]:
                name = ".".join(candidate)
                if (PKG / Path(*candidate)).with_suffix(".py").exists():
                    found.add(name)
                elif candidate and (PKG / Path(*candidate) / "__init__.py").exists():
                    found.add(name + ".__init__")
        graph[module] = found
    return graph


def folder(module: str) -> str:
    return module.split(".")[0] if "." in module else ""


def test_imports_point_down_and_never_cycle():
    graph = engine_imports()
    assert {"runners.pipeline", "methods.dispatch", "volumes.read"} <= set(graph)
    upward = [f"{m} -> {d}" for m, deps in graph.items() for d in deps
              if folder(d) != folder(m) and LAYER[folder(d)] >= LAYER[folder(m)]
              and m != "__main__" and not (folder(m) == "cli" and folder(d) in ("bench", "training"))]
    assert upward == []
    state: dict[str, int] = {}

    def visit(module, path):
        state[module] = 1
        for dep in graph.get(module, ()):
            assert state.get(dep) != 1, " -> ".join(path + [module, dep])
            if dep not in state:
                visit(dep, path + [module])
        state[module] = 2
    for module in graph:
        if module not in state:
            visit(module, [])


def test_folders_and_files_stay_small():
    folders = [PKG] + [d for d in PKG.iterdir() if (d / "__init__.py").exists()]
    for d in folders:
        assert len(list(d.glob("*.py"))) <= 10, d.name
        init = (d / "__init__.py").read_text(encoding="utf-8")
        assert init.startswith('"""') and len(init.splitlines()[0]) > 20, d.name  # says what lives there
    for path in PKG.rglob("*.py"):
        assert len(path.read_text(encoding="utf-8").splitlines()) <= 400, path.name
    assert len(MODULE.read_text(encoding="utf-8").splitlines()) <= 600


def test_public_api_imports_no_torch_and_resolves():
    code = ("import sys, intersr\n"
            "names = [n for n in intersr.__all__ if n != '__version__']\n"
            "assert not any(m in sys.modules for m in ('torch', 'qt', 'slicer', 'PySide6')), 'heavy'\n"
            "[getattr(intersr, n) for n in names]\n"
            "assert 'torch' not in sys.modules, 'torch after resolving the API'\n"
            "o = intersr.make_options(budget='fast', seed=3)\n"
            "assert isinstance(o, intersr.RunOptions) and o.seed == 3\n"
            "print(len(names))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout) >= 8


def test_every_declared_method_is_registered_with_a_module():
    from intersr import options
    from intersr.methods import METHODS

    assert set(options.METHODS) == set(METHODS)
    for module, description in METHODS.values():
        source = (PKG / "methods" / f"{module}.py").read_text(encoding="utf-8")
        assert "def fit_method(" in source and description.startswith("InterSliceSR")


def test_readme_python_example_runs(tmp_path, monkeypatch):
    """README's engine example, as printed, on a small real crop (budget cut to 2 steps)."""
    import re

    import SimpleITK as sitk
    from conftest import sample_crop

    readme = (PKG.parent.parent / "README.md").read_text(encoding="utf-8")
    code = re.search(r"\*\*Python, without Slicer\*\*.*?```python\n(.*?)```", readme, re.S).group(1)
    assert 'budget="fast"' in code
    sitk.WriteImage(sample_crop((32, 32, 10)), str(tmp_path / "thick.nii.gz"))
    monkeypatch.chdir(tmp_path)
    exec(code.replace('budget="fast"', "adapt_steps=2"), {})
    iso = sitk.ReadImage(str(tmp_path / "iso.nrrd"))
    assert iso.GetSize() == (32, 32, 15)
    assert iso.GetMetaData("intersr_version")
