"""The structure of the code: imports run one way (envs <- agents <- experiments), no module
imports another that imports it back (directly or around a circle), and objectives cannot be
mis-declared."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("envs", "agents", "experiments", "conf")


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules ``name`` imports anywhere in its file (module level or inside functions).
    ``from pkg import sub`` counts as importing the submodule only."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            prefix = ".".join(base + ([node.module] if node.module else []))
            subs = [f"{prefix}.{a.name}" for a in node.names if f"{prefix}.{a.name}" in modules]
            targets = subs + ([prefix] if len(subs) < len(node.names) else [])
        else:
            continue
        for target in targets:
            parts = target.split(".")
            while parts and ".".join(parts) not in modules:
                parts.pop()
            if parts and ".".join(parts) != name:
                found.add(".".join(parts))
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def test_the_checker_sees_the_imports_it_must(graph):
    assert "agents.exact.solver" in graph["agents.exact"]
    assert "envs.core.engine" in graph["envs.vector"] or "envs.core" in graph["envs.vector"]
    assert any(m.startswith("agents") for m in graph["experiments.jobs"])


@pytest.mark.parametrize("lower, upper", [("envs", ("agents", "experiments")), ("agents", ("experiments",))])
def test_imports_run_one_way(graph, lower, upper):
    wrong = sorted(f"{m} imports {d}" for m, deps in graph.items() if m.split(".")[0] == lower
                   for d in deps if d.split(".")[0] in upper)
    assert not wrong, f"{lower}/ must not import {upper}: " + "; ".join(wrong)


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_circles(graph):
    circles = _circles(graph)
    assert not circles, "modules that import each other (directly or around a circle): " + "; ".join(
        " <-> ".join(c) for c in circles)


def test_the_circle_check_finds_a_circle():
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_an_objective_with_params_but_no_dataclass_is_refused_naming_the_fix():
    from agents.objectives import Objective, ObjectiveError, param, register_objective

    class Forgot(Objective):
        lam: float = param(0.5, "weight")

        def reward(self, t):
            return t.reward * self.lam

    with pytest.raises(ObjectiveError, match=r"Forgot declares parameters \['lam'\].*@dataclass"):
        Forgot()
    with pytest.raises(ObjectiveError, match="@dataclass"):
        register_objective(Forgot)

    class Plain(Objective):  # no parameters of its own: no dataclass needed
        def reward(self, t):
            return t.reward

    assert Plain().discount == 1.0


def _has_doc(obj, owner=None, name=None) -> bool:
    if isinstance(obj, type):
        doc = obj.__dict__.get("__doc__")
        return bool(doc and doc.strip() and not doc.startswith(obj.__name__ + "("))  # not dataclass's own
    doc = (obj.fget if isinstance(obj, property) else obj).__doc__
    if doc and doc.strip():
        return True
    for base in (owner.__mro__[1:] if owner is not None else ()):  # an override may inherit its docstring
        if name in base.__dict__:
            b = base.__dict__[name]
            b = getattr(b, "__func__", b)
            bdoc = (b.fget if isinstance(b, property) else b).__doc__
            if bdoc and bdoc.strip():
                return True
    return False


def test_every_public_definition_has_a_docstring():
    import importlib
    import inspect
    import pkgutil

    missing = []
    for pkg in ("envs", "agents", "experiments"):
        package = importlib.import_module(pkg)
        for info in [None, *pkgutil.walk_packages(package.__path__, pkg + ".")]:
            name = pkg if info is None else info.name
            if name.endswith("__main__"):
                continue
            module = importlib.import_module(name)
            for attr, obj in vars(module).items():
                if attr.startswith("_") or not (inspect.isfunction(obj) or inspect.isclass(obj)):
                    continue
                if getattr(obj, "__module__", None) != name:
                    continue
                if not _has_doc(obj):
                    missing.append(f"{name}.{attr}")
                if inspect.isclass(obj):
                    for mname, member in vars(obj).items():
                        f = getattr(member, "__func__", member)
                        if mname.startswith("_") or not (inspect.isfunction(f) or isinstance(f, property)):
                            continue
                        if not _has_doc(f, obj, mname):
                            missing.append(f"{name}.{attr}.{mname}")
    assert not missing, f"{len(missing)} public definitions without a docstring: {missing[:20]}"
