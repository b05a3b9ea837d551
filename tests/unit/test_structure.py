"""The layout's promises (DESIGN §1), checked on the source itself.

Each folder of ``service/`` has one job, and these tests keep it that way: no
oversized module or function, no import across a layer boundary, no Flask
request lifecycle in use cases, one owner of the ``stocks:*`` Redis keys, one
fail-open Redis helper, no private member of a library object.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICE = ROOT / "service"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60

# layer (a folder or module under service/) -> service modules it must not import
FORBIDDEN_IMPORTS: dict[str, tuple[str, ...]] = {
    "api": ("models", "repositories", "vendorapi", "marketdata"),
    "services": ("api", "schemas"),
    "schemas": ("services", "repositories"),
    "models": ("services", "api", "schemas"),
    "repositories": ("services", "api", "schemas"),
    "vendorapi": ("services", "api", "schemas", "models", "repositories", "marketdata"),
    "marketdata": ("services", "api", "schemas", "models", "repositories"),
}
REQUEST_LIFECYCLE = {
    "request",
    "g",
    "after_this_request",
    "make_response",
    "Response",
    "has_request_context",
}


def _modules() -> list[Path]:
    return sorted(
        path
        for path in SERVICE.rglob("*.py")
        if "migrations" not in path.relative_to(SERVICE).parts
    )


def _name(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def _layer(path: Path) -> str:
    return path.relative_to(SERVICE).parts[0].removesuffix(".py")


def _imported_service_modules(tree: ast.Module) -> set[str]:
    """The ``service.X`` top-level names a module imports (``service.api.errors`` → ``api``)."""
    found: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "service":
                names = [f"service.{alias.name}" for alias in node.names]
            else:
                names = [node.module]
        found.update(name.split(".")[1] for name in names if name.startswith("service."))
    return found


def test_no_module_is_longer_than_400_lines() -> None:
    long = {
        _name(path): lines
        for path in _modules()
        if (lines := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}


def test_no_function_is_longer_than_60_lines() -> None:
    long = {}
    for path in _modules():
        for node in ast.walk(_tree(path)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                assert node.end_lineno is not None
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long[f"{_name(path)}:{node.name}"] = length
    assert long == {}


@pytest.mark.parametrize("layer", sorted(FORBIDDEN_IMPORTS))
def test_layers_import_only_what_they_may(layer: str) -> None:
    leaks = {
        _name(path): sorted(_imported_service_modules(_tree(path)) & set(FORBIDDEN_IMPORTS[layer]))
        for path in _modules()
        if _layer(path) == layer
    }
    assert {name: found for name, found in leaks.items() if found} == {}


def test_config_is_a_leaf() -> None:
    assert _imported_service_modules(_tree(SERVICE / "config.py")) == set()


def test_use_cases_know_nothing_of_the_request_lifecycle() -> None:
    used = {}
    for path in _modules():
        if _layer(path) not in ("services", "marketdata"):
            continue
        for node in ast.walk(_tree(path)):
            if isinstance(node, ast.ImportFrom) and node.module == "flask":
                names = {alias.name for alias in node.names} & REQUEST_LIFECYCLE
                if names:
                    used[_name(path)] = sorted(names)
    assert used == {}


def test_only_marketdata_names_the_stocks_keys() -> None:
    owners = {
        _name(path)
        for path in _modules()
        for node in ast.walk(_tree(path))
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and node.value.startswith("stocks:")
    }
    assert owners
    assert {name for name in owners if not name.startswith("service/marketdata/")} == set()


def test_redis_failures_are_handled_in_one_place() -> None:
    handlers = set()
    for path in _modules():
        for node in ast.walk(_tree(path)):
            # ``except RedisError`` or, in a context manager's exit, ``isinstance(…, RedisError)``.
            caught = isinstance(node, ast.ExceptHandler) and "RedisError" in ast.unparse(
                node.type or node
            )
            checked = (
                isinstance(node, ast.Call)
                and ast.unparse(node.func) == "isinstance"
                and "RedisError" in ast.unparse(node.args[-1])
            )
            if caught or checked:
                handlers.add(_name(path))
    assert handlers == {"service/cache.py"}


def test_no_private_member_of_another_object_is_used() -> None:
    """``obj._x`` only on ``self``/``cls`` (our own objects), never on a library's."""
    used = set()
    for path in _modules():
        for node in ast.walk(_tree(path)):
            if (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
            ):
                used.add(f"{_name(path)}:{node.lineno}: {ast.unparse(node)}")
    assert used == set()
