"""The public surface as people and tools see it: exported names, docstrings, run-time
signatures of the blocking twin, and a package whose modules import each other one way."""

from __future__ import annotations

import ast
import importlib.util
import inspect
import itertools
import pkgutil
import subprocess
import sys
import typing
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from pathlib import Path

import pytest

import wachat_async
from wachat_async import AsyncWachat, Wachat
from wachat_async._help import blocking_doc
from wachat_async.sync import Instances, Messages, Webhooks

PACKAGE = Path(wachat_async.__file__).parent


def test_all_lists_exactly_the_public_names() -> None:
    public = {
        name
        for name, value in vars(wachat_async).items()
        if not name.startswith("_") and not inspect.ismodule(value)
    }
    assert set(wachat_async.__all__) == public | {"__version__"}
    assert wachat_async.__all__ == sorted(wachat_async.__all__, key=lambda n: (n[0] == "_", n))
    for name in wachat_async.__all__:
        assert getattr(wachat_async, name) is not None


def test_every_exception_lives_in_errors() -> None:
    for name in wachat_async.__all__:
        value = getattr(wachat_async, name)
        if (
            inspect.isclass(value)
            and issubclass(value, Exception)
            # EventLoopBlockingWarning is a warning category, not an error
            and value.__module__ != "wachat_async._loop_thread"
        ):
            assert value.__module__ == "wachat_async.errors", name


GROUPS = [
    (Instances, "instances"),
    (Messages, "messages"),
    (Webhooks, "webhooks"),
]


def async_group(attribute: str) -> type:
    client = AsyncWachat("k", base_url="http://127.0.0.1:9/api/v1")
    return type(getattr(client, attribute))


def public_methods(cls: type) -> list[str]:
    return [
        name
        for name, value in vars(cls).items()
        if not name.startswith("_")
        and (callable(value) or hasattr(value, "__get__"))
        and not isinstance(value, property)
    ]


@pytest.mark.parametrize(("sync_group", "attribute"), GROUPS)
def test_the_blocking_twin_has_the_real_signature_and_docstring(
    sync_group: type, attribute: str
) -> None:
    twin_of = async_group(attribute)
    wa = Wachat("k", base_url="http://127.0.0.1:9/api/v1")
    try:
        group = getattr(wa, attribute)
        names = public_methods(twin_of)
        assert set(public_methods(sync_group)) == set(names), "an async method lacks its twin"
        for name in names:
            original = getattr(twin_of, name)
            blocking = getattr(group, name)
            expected = inspect.signature(original, eval_str=True)
            params = list(expected.parameters.values())[1:]  # without self
            returns = expected.return_annotation
            if typing.get_origin(returns) in (AsyncGenerator, AsyncIterator):
                returns = Iterator.__class_getitem__(  # type: ignore[attr-defined]
                    typing.get_args(returns)[0]
                )
            actual = inspect.signature(blocking)
            assert list(actual.parameters.values()) == params, name
            assert actual.return_annotation == returns, name
            assert "*args" not in str(actual), name
            assert blocking.__doc__ == blocking_doc(original.__doc__), name
            assert blocking.__name__ == name
    finally:
        wa.close()


def test_every_public_method_of_both_clients_has_a_docstring() -> None:
    owners: list[type] = [AsyncWachat, Wachat, Instances, Messages, Webhooks]
    owners += [async_group(attribute) for _, attribute in GROUPS]
    missing = [
        f"{owner.__name__}.{name}"
        for owner in owners
        for name in [*public_methods(owner), "__init__"]
        if not (inspect.getdoc(getattr(owner, name)) or "").strip()
    ]
    assert missing == []


def test_client_constructors_show_every_option() -> None:
    import attrs

    from wachat_async._config import Settings

    options = [f.name for f in attrs.fields(Settings)]
    assert list(inspect.signature(Wachat).parameters) == options
    assert list(inspect.signature(AsyncWachat).parameters) == [*options, "session"]
    create = inspect.signature(AsyncWachat("k", base_url="http://127.0.0.1:9").instances.create)
    spec_fields = [f.name for f in attrs.fields(wachat_async.CreateSpec)]
    assert list(create.parameters) == [*spec_fields, "timeout", "max_retries"]


def _package_imports() -> dict[str, set[tuple[str, tuple[str, ...]]]]:
    """module -> {(imported module, names imported from it)}, every import in the package,
    function-local ones included."""
    graph: dict[str, set[tuple[str, tuple[str, ...]]]] = {}
    for info in pkgutil.walk_packages([str(PACKAGE)], prefix="wachat_async."):
        module = info.name
        spec = importlib.util.find_spec(module)
        assert spec is not None
        assert spec.origin is not None
        path = Path(spec.origin)
        tree = ast.parse(path.read_text())
        package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
        edges: set[tuple[str, tuple[str, ...]]] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - node.level + 1]
                    target = ".".join([*base, node.module] if node.module else base)
                else:
                    target = node.module or ""
                if target.startswith("wachat_async"):
                    edges.add((target, tuple(a.name for a in node.names)))
            elif isinstance(node, ast.Import):
                edges |= {(a.name, ()) for a in node.names if a.name.startswith("wachat_async")}
        graph[module] = edges
    graph.setdefault("wachat_async", set())
    return graph


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def test_no_module_imports_another_modules_private_names() -> None:
    offences = [
        f"{module} imports {name} from {target}"
        for module, edges in _package_imports().items()
        for target, names in edges
        for name in names
        if name.startswith("_")
        and not name.startswith("__")
        and not _is_module(f"{target}.{name}")
        and target != module
    ]
    assert offences == []


def test_the_package_has_no_import_cycles() -> None:
    graph: dict[str, set[str]] = {}
    for module, edges in _package_imports().items():
        targets = set()
        for target, names in edges:
            for name in names or ("",):
                submodule = f"{target}.{name}"
                targets.add(submodule if name and _is_module(submodule) else target)
        # A package's __init__ imports what it exports; its modules importing siblings
        # through it would be a cycle, and is counted as one.
        graph[module] = {t for t in targets if t != module}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    # Packages import their own modules to re-export them; those edges are not cycles.
    real = [
        cycle
        for cycle in cycles
        if not all(a.startswith(b) or b.startswith(a) for a, b in itertools.pairwise(cycle))
    ]
    assert real == []


def test_importing_the_client_never_imports_aiohttp_web() -> None:
    code = "import sys, wachat_async; print('aiohttp.web' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
