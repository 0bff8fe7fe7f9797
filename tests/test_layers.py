"""The layer rules of docs/design.md, checked on the source: data flows spec -> runs -> backend -> trainer ->
tracker -> analysis, and a lower layer never imports a higher one (not even inside a function)."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# layer: the modules it holds (a package means all of it). Order as in docs/design.md.
LAYERS = {
    "base": ["gatscale.atomic", "gatscale.errors", "gatscale.hub", "gatscale.sizes", "gatscale.stats",
             "gatscale.config"],
    "models": ["gatscale.models", "gatscale.mng", "gatscale.diffaug", "gatscale.losses", "gatscale.flops"],
    "data": ["gatscale.data", "gatscale.vae"],
    "networks": ["gatscale.digits_nets", "gatscale.encoders", "gatscale.objective"],
    "tracker": ["gatscale.tracking"],
    "eval": ["gatscale.eval"],
    "trainer": ["gatscale.train"],
    "after_run": ["gatscale.eval.cli", "gatscale.eval.run", "gatscale.eval.analyze"],  # read trained checkpoints
    "sweep": ["gatscale.sweep"],
    "analysis": ["analysis"],
    "study_commands": ["analysis.cli", "analysis.report", "analysis.notebook", "analysis.predict"],  # figures / report / predict
    "cli": ["gatscale.cli"],
}
# layer: the layers it may import (besides itself), as docs/design.md states them.
MAY_IMPORT = {
    "base": set(),
    "models": {"base"},                                        # tensors only
    "data": {"base"},
    "networks": {"base", "models", "data"},                    # the digits encoder is trained on the embedded data
    "tracker": {"base"},
    "eval": {"base", "models", "data", "networks", "tracker"},
    "trainer": {"base", "models", "data", "networks", "tracker", "eval"},
    "after_run": {"base", "models", "data", "networks", "tracker", "eval", "trainer"},  # trainer: checkpoints
    "sweep": {"base", "models", "tracker", "trainer"},         # models: FLOPs only; trainer: status and exit codes
    "analysis": {"base", "tracker"},                           # the tracker and the run folders it names
    "study_commands": {"base", "tracker", "analysis", "sweep"},  # sweep: the spec names a study and its runs
    "cli": set(LAYERS) - {"cli"},
}


def layer_of(module: str) -> str:
    best = max((m for ms in LAYERS.values() for m in ms if module == m or module.startswith(m + ".")), key=len)
    return next(layer for layer, ms in LAYERS.items() if best in ms)


def source_modules():
    for pkg in ("gatscale", "analysis"):
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            is_pkg = parts[-1] == "__init__"
            yield ".".join(parts[:-1] if is_pkg else parts), is_pkg, path


def imports_of(module: str, is_pkg: bool, path: Path) -> set[str]:
    """Every project module `path` imports, at the top or inside a function."""
    found, known = set(), {m for m, _, _ in source_modules()}
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".") if is_pkg else module.split(".")[:-1]
                base = ".".join(package[:len(package) - node.level + 1] + ([node.module] if node.module else []))
            named = {f"{base}.{a.name}" for a in node.names}  # `from . import figures` names a module
            found |= (named & known) or {base}
    return {m for m in found if m in known and m != module}


def test_every_module_belongs_to_a_layer():
    for module, _, _ in source_modules():
        if module in ("gatscale", "analysis"):
            continue
        assert layer_of(module) in LAYERS


def test_no_layer_imports_one_it_may_not():
    broken = []
    for module, is_pkg, path in source_modules():
        if module == "gatscale":
            continue
        layer = layer_of(module)
        for target in imports_of(module, is_pkg, path):
            if target == "gatscale":
                continue
            to = layer_of(target)
            if to != layer and to not in MAY_IMPORT[layer]:
                broken.append(f"{module} ({layer}) imports {target} ({to})")
    assert not broken, "\n".join(broken)


def test_the_import_graph_has_no_cycle():
    graph = {m: imports_of(m, p, path) for m, p, path in source_modules()}
    state, stack, cycles = {}, [], []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == "open":
                cycles.append(stack[stack.index(n):] + [n])
            elif n not in state:
                visit(n)
        stack.pop()
        state[m] = "done"
    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


ISOLATED_IMPORT = """
import importlib, json, pkgutil, sys
layers, may = json.loads(sys.argv[1]), json.loads(sys.argv[2])
def layer_of(m):
    best = max((p for ps in layers.values() for p in ps if m == p or m.startswith(p + ".")), key=len, default=None)
    return next((l for l, ps in layers.items() if best in ps), None)
broken = []
for layer, modules in layers.items():
    for name in [m for m in sys.modules if m.split(".")[0] in ("gatscale", "analysis")]:
        del sys.modules[name]  # each layer on its own: only what it imports itself gets loaded
    for m in modules:
        importlib.import_module(m)
    loaded = {layer_of(m) for m in sys.modules if m.split(".")[0] in ("gatscale", "analysis")} - {None}
    broken += [f"importing {layer} loads {other}" for other in sorted(loaded - {layer} - set(may[layer]))]
print(json.dumps(broken))
"""


def reachable(layer: str) -> set[str]:
    """The layers `layer` may load: those it may import, and what they may load."""
    seen, todo = set(), [layer]
    while todo:
        for other in MAY_IMPORT[todo.pop()] - seen:
            seen.add(other)
            todo.append(other)
    return seen


def test_each_layer_imported_alone_loads_only_the_layers_it_may_import():
    import json
    layers = {layer: [m for m in modules if m != "gatscale.cli"] for layer, modules in LAYERS.items() if layer != "cli"}
    may = {layer: sorted(reachable(layer)) for layer in layers}
    out = subprocess.run([sys.executable, "-c", ISOLATED_IMPORT, json.dumps(layers), json.dumps(may)], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.splitlines()[-1]) == []
