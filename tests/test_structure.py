"""The package's shape, checked: data flows one way (no import cycles), vitdash never imports streamlit, no
function-local imports of vitdash's own modules, few modules directly under vitdash/."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "vitdash"
MAX_TOP_LEVEL_MODULES = 7  # besides __init__/__main__: errors, cache, history, pipeline, report, jobs, ...


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, ast.Module]:
    return {_module_name(p): ast.parse(p.read_text(), str(p)) for p in sorted(PACKAGE.rglob("*.py"))}


def _imported(node: ast.AST, current: str) -> list[str]:
    """vitdash modules an import statement names (`from vitdash.x import y` counts y when it is a module)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.startswith("vitdash")]
    if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module.startswith("vitdash"):
        return [node.module] + [f"{node.module}.{a.name}" for a in node.names]
    return []


def _graph(modules: dict[str, ast.Module]) -> dict[str, set[str]]:
    graph = {}
    for name, tree in modules.items():
        deps = set()
        for node in ast.walk(tree):
            deps.update(d for d in _imported(node, name) if d in modules and d != name)
        graph[name] = deps
    return graph


def test_no_import_cycles():
    graph = _graph(_modules())
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph[node]):
            # a package's __init__ importing its own submodules is how packages work, not a cycle back
            if state.get(dep) == 1 and not node.startswith(dep + "."):
                cycles.append(stack[stack.index(dep):] + [dep] if dep in stack else [node, dep])
            elif dep not in state:
                visit(dep, stack + [dep])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_no_function_local_imports_of_vitdash():
    found = []
    for name, tree in _modules().items():
        for fn in ast.walk(tree):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                found += [f"{name}:{n.lineno}" for n in ast.walk(fn) if _imported(n, name)]
    assert not found, f"function-local imports of vitdash modules (hoist them; fix the cycle instead): {found}"


def test_library_never_imports_streamlit():
    found = [name for name, tree in _modules().items() for node in ast.walk(tree)
             if isinstance(node, (ast.Import, ast.ImportFrom))
             and any((a.name if isinstance(node, ast.Import) else (node.module or "")).split(".")[0] == "streamlit"
                     for a in node.names)]
    assert not found, f"vitdash must not import streamlit: {found}"


def test_few_modules_directly_under_the_package():
    top = sorted(p.name for p in PACKAGE.glob("*.py") if p.name not in ("__init__.py", "__main__.py"))
    assert len(top) <= MAX_TOP_LEVEL_MODULES, f"modules directly under vitdash/ belong in a stage package: {top}"


def test_the_shared_cache_knows_no_stage():
    """It holds checkpoints, models, audits and head evidence alike: the stages choose keys and sizes, so any
    stage may use it without a cycle. (Its default bound comes from the memory budget, which knows no stage.)"""
    deps = _graph(_modules())["vitdash.cache"]
    assert deps <= {"vitdash.errors", "vitdash.common.memory"}, deps
    assert _graph(_modules())["vitdash.common.memory"] <= {"vitdash.errors"}


def _session_literals(tree: ast.Module) -> set[str]:
    """String keys a Streamlit script names literally: session_state[...], .get/.pop/.setdefault(...), `in
    st.session_state`, and widget key=... arguments."""
    def is_state(node: ast.AST) -> bool:
        return isinstance(node, ast.Attribute) and node.attr == "session_state"

    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and is_state(node.value) and isinstance(node.slice, ast.Constant):
            found.add(node.slice.value)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and is_state(node.func.value) \
                and node.args and isinstance(node.args[0], ast.Constant):
            found.add(node.args[0].value)
        elif isinstance(node, ast.Compare) and isinstance(node.left, ast.Constant) \
                and any(is_state(c) for c in node.comparators):
            found.add(node.left.value)
        elif isinstance(node, ast.Call):
            found.update(k.value.value for k in node.keywords if k.arg == "key" and isinstance(k.value, ast.Constant))
    return {k for k in found if isinstance(k, str)}


def test_pages_share_session_keys_only_through_ui_state():
    """A key two pages (or a page and the sidebar) use is a constant in ui/state.py, never a literal in both."""
    scripts = [*(ROOT / "app_pages").glob("*.py"), *(ROOT / "ui").glob("*.py")]
    files = sorted(p for p in scripts if p != ROOT / "ui" / "state.py")
    seen: dict[str, list[str]] = {}
    for path in files:
        for key in _session_literals(ast.parse(path.read_text())):
            seen.setdefault(key, []).append(path.name)
    shared = {k: v for k, v in seen.items() if len(v) > 1}
    assert not shared, f"session keys named literally in several scripts (move them to ui/state.py): {shared}"


MAX_PAGE_LINES = 150


@pytest.mark.parametrize("page", sorted(p.name for p in (ROOT / "app_pages").glob("*.py")))
def test_pages_stay_thin(page):
    """A page lays out what the library computes; past this many lines it is usually holding a rule."""
    lines = len((ROOT / "app_pages" / page).read_text().splitlines())
    assert lines <= MAX_PAGE_LINES, f"app_pages/{page} has {lines} lines (at most {MAX_PAGE_LINES})"


def test_cpus_and_torch_threads_are_counted_and_set_in_one_place():
    """os.cpu_count is the host's total, not what this process may use (containers, taskset); the affinity-aware
    count and torch's thread setting live in vitdash/common/compute.py only."""
    allowed = ROOT / "vitdash" / "common" / "compute.py"
    found = []
    for path in [*PACKAGE.rglob("*.py"), *(ROOT / "app_pages").glob("*.py"), *(ROOT / "ui").glob("*.py")]:
        if path == allowed:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in ("cpu_count", "set_num_threads", "sched_getaffinity") \
                    and isinstance(node.value, ast.Name) and node.value.id in ("os", "torch"):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.value.id}.{node.attr}")
    assert not found, f"use vitdash.common.compute instead: {found}"


def test_no_pages_folder_beside_the_entry_script():
    """A folder named `pages/` next to app.py puts Streamlit in its old multipage mode after every restart: a
    first request to /<page> then runs that file without app.py (no sign-in gate, no sidebar) until someone loads
    /. The pages live in app_pages/ and app.py's st.navigation lists them."""
    assert not (ROOT / "pages").exists(), "rename pages/ (see app_pages/): it bypasses app.py"
    assert (ROOT / "app_pages").is_dir()
