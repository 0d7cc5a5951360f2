"""The shape of the Rust core, checked from its source: which top-level module of `src/` may use
which, and that their `use` graph has no cycle. A request travels worker → server → tls → http →
bridge → wsgi/asgi; config, errors, stop, scoreboard and sync are leaves every layer may use.

A module "uses" another when its code (tests excluded) names it through `crate::` or `super::`.
"""

from __future__ import annotations

import re
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
TRAVEL = ["worker", "server", "tls", "http", "bridge", "wsgi", "asgi"]
LEAVES = ["config", "errors", "stop", "scoreboard", "sync"]
# What each layer may use besides the leaves.
ALLOWED = {
    "worker": {"server", "http", "bridge", "wsgi", "asgi"},
    "server": {"http"},
    "tls": set(),
    "http": {"tls"},
    "bridge": {"http"},
    "wsgi": {"bridge", "http"},
    "asgi": {"bridge", "http"},
}


def module_of(path: Path) -> list[str]:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return parts[:-1] if parts[-1] == "mod" else parts


def uses() -> dict[str, set[str]]:
    """Top-level module -> the top-level modules its non-test code names."""
    graph: dict[str, set[str]] = {}
    for path in SRC.rglob("*.rs"):
        mod = module_of(path)
        if mod == ["lib"]:
            continue
        code = re.split(r"#\[cfg\(test\)\]", path.read_text())[0]
        parent = mod[:-1]
        for kind, target in re.findall(r"\b(crate|super)::([a-z_][a-z_0-9]*(?:::[a-z_][a-z_0-9]*)*)", code):
            full = target.split("::") if kind == "crate" else [*parent, *target.split("::")]
            if full and full[0] != mod[0]:
                graph.setdefault(mod[0], set()).add(full[0])
    return graph


def test_every_module_is_known():
    top = {p.stem for p in SRC.glob("*.rs") if p.stem != "lib"} | {p.name for p in SRC.iterdir() if p.is_dir()}
    assert top == set(TRAVEL) | set(LEAVES)


def test_modules_use_only_what_is_below_them():
    for mod, targets in uses().items():
        # The layers may use any leaf; a leaf only the generic helpers (sync, errors).
        allowed = ALLOWED[mod] | set(LEAVES) if mod in ALLOWED else {"sync", "errors"}
        assert targets <= allowed, f"{mod} uses {sorted(targets - allowed)}"


def test_there_is_no_cycle():
    graph = uses()
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for nxt in graph.get(node, ()):
            assert state.get(nxt) != "open", " -> ".join([*path, node, nxt])
            if nxt not in state:
                visit(nxt, [*path, node])
        state[node] = "done"

    for node in graph:
        if node not in state:
            visit(node, [])


def test_lib_lists_modules_in_travel_order():
    lib = (SRC / "lib.rs").read_text()
    assert re.findall(r"^pub mod (\w+);", lib, re.M) == [*TRAVEL, *LEAVES]
