"""The layer rules of docs/design.md, checked on the source: data flows spec -> runs -> backend -> trainer ->
tracker -> analysis, and a lower layer never imports a higher one (not even inside a function).

A module's layer is its folder (`gatscale/<layer>/...`, `analysis/...`, and `gatscale/cli.py`, the dispatcher);
which layers each may import is read from the table in docs/design.md, the one place it is written."""
import ast
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROOT_MODULES = {"gatscale", "gatscale.cli"}  # the package itself and the dispatcher


def layer_of(module: str) -> str:
    parts = module.split(".")
    if parts[0] == "analysis":
        return "analysis"
    return "cli" if module == "gatscale.cli" else parts[1]


def may_import() -> dict[str, set[str]]:
    """layer -> the layers it may import, from the "may import" column of docs/design.md's layer table."""
    rules = {}
    for line in (ROOT / "docs" / "design.md").read_text().splitlines():
        m = re.match(r"\| `(gatscale/(\w+)/|analysis/|gatscale/cli\.py)` \|[^|]*\| (.*) \|$", line)
        if not m:
            continue
        layer = m.group(2) or ("analysis" if m.group(1) == "analysis/" else "cli")
        column = re.sub(r"\([^)]*\)", "", m.group(3)).split(";")[0]  # the reasons: in parentheses, after ";"
        rules[layer] = set() if "nothing" in column else {w.strip() for w in column.split(",")}
    rules["cli"] = set(rules) - {"cli"}  # "any"
    return rules


MAY_IMPORT = may_import()


def source_modules():
    for pkg in ("gatscale", "analysis"):
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            is_pkg = parts[-1] == "__init__"
            yield ".".join(parts[:-1] if is_pkg else parts), is_pkg, path


KNOWN = {m for m, _, _ in source_modules()}


def imports_of(module: str, is_pkg: bool, path: Path) -> set[str]:
    """Every project module `path` imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".") if is_pkg else module.split(".")[:-1]
                base = ".".join(package[:len(package) - node.level + 1] + ([node.module] if node.module else []))
            named = {f"{base}.{a.name}" for a in node.names}  # `from . import figures` names a module
            found |= (named & KNOWN) or {base}
    return {m for m in found if m in KNOWN and m != module}


GRAPH = {m: imports_of(m, p, path) for m, p, path in source_modules()}


def test_the_table_names_every_layer_folder():
    folders = {p.name for p in (ROOT / "gatscale").iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert set(MAY_IMPORT) == folders | {"analysis", "cli"}
    assert all(rules <= set(MAY_IMPORT) for rules in MAY_IMPORT.values()), MAY_IMPORT


def test_every_module_lives_in_a_layer_folder():
    loose = [m for m in KNOWN if m.startswith("gatscale.") and m.count(".") == 1 and m not in ROOT_MODULES
             and not (ROOT / "gatscale" / m.split(".")[1]).is_dir()]
    assert not loose, f"modules outside the layer folders: {loose}"


def test_no_layer_imports_one_it_may_not():
    broken = []
    for module, targets in GRAPH.items():
        if module == "gatscale":
            continue
        layer = layer_of(module)
        for target in targets - {"gatscale"}:
            to = layer_of(target)
            if to != layer and to not in MAY_IMPORT[layer]:
                broken.append(f"{module} ({layer}) imports {target} ({to})")
    assert not broken, "\n".join(broken)


def reachable_modules(start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for dep in GRAPH.get(todo.pop(), ()):
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return seen


def test_the_import_graph_has_no_cycle():
    assert [m for m in sorted(GRAPH) if m in reachable_modules(m)] == []


def test_the_sweep_backends_import_the_planner_never_the_reverse():
    reached = reachable_modules("gatscale.sweep.plan") | reachable_modules("gatscale.sweep.record")
    assert not {m for m in reached if m.startswith("gatscale.sweep.backends")}


ISOLATED_IMPORT = """
import importlib, json, sys
layers, may = json.loads(sys.argv[1]), json.loads(sys.argv[2])
def layer_of(m):
    parts = m.split(".")
    if parts[0] == "analysis":
        return "analysis"
    return "cli" if m == "gatscale.cli" else (parts[1] if len(parts) > 1 else None)
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


def reachable_layers(layer: str) -> set[str]:
    """The layers `layer` may load: those it may import, and what they may load."""
    seen, todo = set(), [layer]
    while todo:
        for other in MAY_IMPORT[todo.pop()] - seen:
            seen.add(other)
            todo.append(other)
    return seen


def test_each_layer_imported_alone_loads_only_the_layers_it_may_import():
    layers = {}
    for module in sorted(KNOWN - ROOT_MODULES):
        layers.setdefault(layer_of(module), []).append(module)
    may = {layer: sorted(reachable_layers(layer)) for layer in layers}
    out = subprocess.run([sys.executable, "-c", ISOLATED_IMPORT, json.dumps(layers), json.dumps(may)], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.splitlines()[-1]) == []
