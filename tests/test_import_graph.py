"""The packages' import arrows point one way: scripts -> trainer / faces -> deploy -> model / loss /
metric / data_loader -> utils (faces/, the photo pipeline, serves its networks through deploy/'s checked
predictors), no cycle between packages, and none inside faces/."""
import ast
from pathlib import Path

from conftest import ROOT

PACKAGES = ("utils", "model", "loss", "metric", "data_loader", "faces", "trainer", "deploy")
# What each package may import (besides itself). A metric receives feature functions and never imports
# deploy/; nothing below the top layer imports trainer/, deploy/ or faces/.
ALLOWED = {
    "utils": set(),
    "model": {"utils"},
    "loss": {"utils", "model"},
    "metric": {"utils", "model"},
    "data_loader": {"utils"},
    "faces": {"utils", "model", "metric", "data_loader", "deploy"},  # the photo pipeline and file restoring
    "deploy": {"utils", "model", "metric"},  # export, predictors, the checked network: serving, below faces
    "trainer": {"utils", "model", "loss", "metric", "data_loader"},
}


def imported_modules(path):
    """Top-level project modules imported anywhere in the file (function-level imports included)."""
    tree = ast.parse(path.read_text(), str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def package_edges():
    edges = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).glob("*.py")):
            for name in imported_modules(path):
                target = name.split(".")[0]
                if target in PACKAGES and target != package:
                    edges.setdefault((package, target), []).append(f"{path.relative_to(ROOT)} imports {name}")
    return edges


def test_packages_import_only_downwards():
    wrong = [where for (source, target), files in package_edges().items() if target not in ALLOWED[source]
             for where in files]
    assert not wrong, "\n".join(wrong)


def test_no_cycle_between_packages():
    graph = {}
    for source, target in package_edges():
        graph.setdefault(source, set()).add(target)

    def reaches(start, goal, seen=()):
        return any(n == goal or (n not in seen and reaches(n, goal, seen + (n,))) for n in graph.get(start, ()))

    cycles = [package for package in PACKAGES if reaches(package, package)]
    assert not cycles, f"packages on an import cycle: {cycles}"


def test_faces_modules_do_not_import_each_other_in_a_circle():
    modules = {p.stem: p for p in (ROOT / "faces").glob("*.py") if p.stem != "__init__"}
    graph = {name: {m.split(".")[1] for m in imported_modules(path) if m.startswith("faces.") and m.count(".") == 1}
             for name, path in modules.items()}

    def reaches(start, goal, seen=()):
        return any(n == goal or (n not in seen and reaches(n, goal, seen + (n,))) for n in graph.get(start, ()))

    assert not [name for name in modules if reaches(name, name)]


def test_the_checker_sees_a_wrong_arrow(tmp_path, monkeypatch):
    """A metric module importing deploy/ inside a function is caught (guards the guard)."""
    for package in PACKAGES:
        (tmp_path / package).mkdir()
    (tmp_path / "metric" / "bad.py").write_text("def f():\n    from deploy.checked import CheckedNetwork\n")
    (tmp_path / "deploy" / "ok.py").write_text("import metric.bad\n")
    monkeypatch.setattr(__import__(__name__), "ROOT", tmp_path)
    edges = package_edges()
    assert ("metric", "deploy") in edges and "deploy" not in ALLOWED["metric"]
