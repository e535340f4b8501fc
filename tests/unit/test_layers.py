"""Layers only point down: domain/api → render → rollout → k8s → registry → controller/actions
→ cli/console.

A lower layer importing a higher one is how a pure core grows I/O; this test names the import.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.support import ROOT

PACKAGE = ROOT / "operator" / "apprelease"
# Rank of each subpackage (or top-level module); a module may import only ranks <= its own,
# and never a different subpackage of the same rank.
RANKS = {
    "metrics": 0,
    "backoff": 0,
    "domain": 0,
    "api": 1,
    "render": 2,
    "rollout": 3,
    "k8s": 4,
    # Resolve a server's name, check its addresses against the policy, connect to a checked
    # one: shared by registry/ (Nacos) and analysis/ (Prometheus, web hooks).
    "net": 4,
    "registry": 5,
    "analysis": 5,  # the analysis providers' clients (Prometheus, web hooks)
    "controller": 6,
    "actions": 6,  # the operations users make (patches), shared by the CLI and the console
    "cli": 7,
    "console": 7,
}


def _layer_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "apprelease" or len(parts) < 2:
        return None
    return parts[1]


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text())
    package = ".".join(("apprelease", *path.relative_to(PACKAGE).with_suffix("").parts[:-1]))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            names = [f"{module}.{a.name}" for a in node.names] if node.module is None else [module]
            found += [(node.lineno, m) for m in names]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
    return found


# The pure core: specs in, decisions out. No client, no framework, no I/O, so every rule
# in it is a unit test with plain values.
PURE_CORE = ("api", "render", "rollout", "domain")
# The libraries it may use besides the standard library: the API model and YAML text.
PURE_THIRD_PARTY = {"pydantic", "pydantic_core", "yaml", "typing_extensions", "simpleeval"}
# Standard modules that reach outside the process (network, files, processes, threads,
# clocks, logs): a decision that needs one of these belongs to a higher layer.
IO_STDLIB = {"socket", "ssl", "select", "selectors", "asyncio", "threading", "multiprocessing", "concurrent",
             "subprocess", "signal", "os", "io", "pathlib", "shutil", "tempfile", "http", "urllib",
             "time", "logging"}
# ... except their submodules that only compute (URL parsing and quoting).
PURE_STDLIB_SUBMODULES = {"urllib.parse"}


def _pure_core_files() -> list[Path]:
    return sorted(path for path in PACKAGE.rglob("*.py")
                  if path.relative_to(PACKAGE).parts[0].removesuffix(".py") in PURE_CORE)


def _pure(module: str) -> bool:
    """May the pure core import ``module``? (Its own layers are test_layers_only_point_down's.)"""
    top = module.split(".")[0]
    if module in PURE_STDLIB_SUBMODULES:
        return True
    return (top in ("apprelease", "__future__") or top in PURE_THIRD_PARTY
            or (top in sys.stdlib_module_names and top not in IO_STDLIB))


def test_pure_core_imports_no_client_framework_or_io() -> None:
    violations = [f"{path.relative_to(ROOT)}:{line}: imports {module}"
                  for path in _pure_core_files() for line, module in _imports(path) if not _pure(module)]
    assert not violations, "the pure core must not import these:\n" + "\n".join(violations)


@pytest.mark.parametrize("module", ["kopf", "kubernetes.client", "httpx", "aiohttp", "requests", "urllib3",
                                    "socket", "subprocess", "asyncio", "os.path", "prometheus_client"])
def test_the_purity_rule_refuses_clients_frameworks_and_io(module: str) -> None:
    assert not _pure(module)


def test_layers_only_point_down() -> None:
    violations = []
    for path in sorted(PACKAGE.rglob("*.py")):
        own = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
        if own not in RANKS:
            continue
        for line, module in _imports(path):
            target = _layer_of(module)
            if target is None or target == own or target not in RANKS:
                continue
            if RANKS[target] >= RANKS[own]:
                violations.append(f"{path.relative_to(ROOT)}:{line}: {own} imports {module}")
    assert not violations, "\n".join(violations)


def test_every_subpackage_has_a_rank() -> None:
    subpackages = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    modules = {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    assert subpackages | modules <= set(RANKS), sorted((subpackages | modules) - set(RANKS))


def test_the_operator_package_holds_no_developer_tools() -> None:
    for path in PACKAGE.rglob("*.py"):
        for line, module in _imports(path):
            assert not module.startswith("apprelease_dev"), f"{path}:{line} imports {module}"


# Collects tests/unit with apprelease_dev unimportable, as in an install without ./devtools.
_COLLECT_WITHOUT_DEVTOOLS = textwrap.dedent("""
    import importlib.abc, sys

    class NoDeveloperTools(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name.split(".")[0] == "apprelease_dev":
                raise ModuleNotFoundError(f"No module named {name!r} (hidden by the test)", name=name)

    sys.meta_path.insert(0, NoDeveloperTools())
    import pytest
    sys.exit(pytest.main(["--collect-only", "-q", "-p", "no:cacheprovider", "tests/unit"]))
""")


def test_unit_tests_load_without_the_developer_tools() -> None:
    """The developer tools (apprelease_dev: building and running a control plane, Nacos) are
    for e2e tests; the test plugins import them only where a cluster or Nacos is wanted."""
    collected = subprocess.run([sys.executable, "-c", _COLLECT_WITHOUT_DEVTOOLS], cwd=ROOT, capture_output=True,
                               text=True, timeout=300, check=False)
    assert collected.returncode == 0, collected.stdout[-3000:] + collected.stderr[-2000:]
    assert " tests collected" in collected.stdout


K8S = PACKAGE / "k8s"
CLIENT = K8S / "client.py"


def test_one_kubernetes_client_and_one_kubeconfig_loader() -> None:
    """The operator, the CLI and the console reach the apiserver through k8s/ only (the
    console had a client and watches of its own), and find it with k8s/client.py's
    load_configuration only (there were three loaders, and `run --context` was ignored)."""
    outside = [f"{path.relative_to(ROOT)}:{line}: {module}"
               for path in sorted(PACKAGE.rglob("*.py")) if K8S not in path.parents
               for line, module in _imports(path) if module.split(".")[0] == "kubernetes"]
    assert outside == [], "only k8s/ may use the kubernetes client"
    loaders = {"load_kube_config", "load_incluster_config", "list_kube_config_contexts", "new_client_from_config",
               "load_config"}
    calls = [f"{path.relative_to(ROOT)}:{node.lineno}: {node.attr if isinstance(node, ast.Attribute) else node.id}"
             for path in sorted(PACKAGE.rglob("*.py")) if path != CLIENT
             for node in ast.walk(ast.parse(path.read_text()))
             if (node.attr if isinstance(node, ast.Attribute) else getattr(node, "id", None)) in loaders]
    assert calls == [], "load the kubeconfig with k8s.client.load_configuration"


CLIENT_MAKERS = {"ApiClient", "Configuration", "Apiserver", "Kube", "AsyncKube", "load_configuration",
                 "load_api_client", "api_client", "ClientSession"}


def test_no_client_is_made_at_import_time() -> None:
    """Clients take their credentials when made (the console makes one per user): none is
    made by importing a module, where it would be global and whoever's came first."""
    def run_on_import(body: list[ast.stmt]) -> list[ast.stmt]:
        """Module (and class) level statements: function bodies run only when called."""
        found: list[ast.stmt] = []
        for statement in body:
            if isinstance(statement, ast.ClassDef):
                found += run_on_import(statement.body)
            elif not isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef):
                found.append(statement)
        return found

    made = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for statement in run_on_import(ast.parse(path.read_text()).body):
            for node in ast.walk(statement):
                if isinstance(node, ast.Call):
                    name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
                    if name in CLIENT_MAKERS:
                        made.append(f"{path.relative_to(ROOT)}:{node.lineno}: {name}(...)")
    assert made == []


KOPF_ADAPTER = PACKAGE / "controller" / "kopf_adapter.py"


def test_kopf_internals_are_touched_in_one_adapter_only() -> None:
    """kopf's private modules (kopf._...) change without notice: one module replaces what we
    need of them, checked against one version range (tests/unit/test_kopf_adapter.py)."""
    users = [f"{path.relative_to(ROOT)}:{line}: {module}"
             for path in sorted(PACKAGE.rglob("*.py")) if path != KOPF_ADAPTER
             for line, module in _imports(path) if module.startswith("kopf._")]
    assert users == []


def _module_name(path: Path) -> str:
    parts = ("apprelease", *path.relative_to(PACKAGE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_graph() -> dict[str, set[str]]:
    """Module → the package's modules it imports (deferred imports too: a cycle they close
    is still a cycle, only hidden until that function runs)."""
    modules = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
                module = ".".join([*base, node.module] if node.module else base) if node.level else node.module or ""
                # `from package import module` imports that module, not just the package.
                targets |= {f"{module}.{a.name}" if f"{module}.{a.name}" in modules else module for a in node.names}
            elif isinstance(node, ast.Import):
                targets |= {a.name for a in node.names}
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for target in sorted(graph[module]):
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            group = stack[stack.index(module):]
            del stack[stack.index(module):]
            if len(group) > 1:
                found.append(sorted(group))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return found


def test_no_import_cycles() -> None:
    """Modules that import each other (the console's server and its pages did) cannot be
    understood, tested or loaded one without the other."""
    assert _cycles(_import_graph()) == []


def test_the_cycle_finder_finds_cycles() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert _cycles(graph) == [["a", "b", "c"]]
