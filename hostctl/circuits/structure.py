"""A netlist's structure as the nodal solver needs it: which parameters an expression
depends on and in what order to evaluate them, static pivots, floating nodes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hostctl.circuits import expr as ex
from hostctl.circuits.netlist import Netlist
from hostctl.errors import InputError


def _depends(net: Netlist, expr: str) -> set[str]:
    """Every parameter an expression reads, through the ``.param`` definitions."""
    seen: set[str] = set()
    todo = list(ex.names(expr))
    while todo:
        n = todo.pop()
        if n in seen:
            continue
        seen.add(n)
        if n in net.param_exprs:
            todo.extend(ex.names(net.param_exprs[n]))
    return seen


def _match(branch, row: Mapping[str, int], index: Mapping[str, int]) -> list[tuple[int, int]]:
    """(branch row, node it drives) pairs for static pivoting; [] when two branches would
    need the same node (then the elimination plan fails and the dense solve is used)."""
    used: set[int] = set()
    pairs = []
    for e in branch:
        for n in e.nodes[:2]:
            i = index.get(n)
            if i is not None and i not in used:
                used.add(i)
                pairs.append((row[e.name], i))
                break
        else:
            return [(-1, -1)]
    return pairs


def _topo(net: Netlist) -> list[str]:
    """Parameters in dependency order."""
    order: list[str] = []
    seen: set[str] = set()

    def visit(n: str) -> None:
        if n in seen:
            return
        seen.add(n)
        for m in ex.names(net.param_exprs[n]):
            visit(m)
        order.append(n)

    for n in net.param_exprs:
        visit(n)
    return order


def _evaluate_all(net: Netlist, order: list[str]) -> dict[str, float]:
    env: dict[str, float] = {}
    for n in order:
        env[n] = float(ex.evaluate(net.param_exprs[n], env))
    return env


def _check_floating(net: Netlist) -> None:
    """Every node needs a path of elements to ground (current sources and the control
    inputs of an E are no such path), else its voltage is undefined at every frequency."""
    parent: dict[str, str] = {}

    def find(n: str) -> str:
        while parent.setdefault(n, n) != n:
            parent[n] = parent[parent[n]]
            n = parent[n]
        return n

    for e in net.elements:
        for n in e.nodes:
            find(n)
        if e.kind != "I":
            parent[find(e.nodes[0])] = find(e.nodes[1])
    ground = find("0")
    floating = [n for n in net.nodes if find(n) != ground]
    if floating:
        raise InputError(f"node(s) {', '.join(floating)} float: no element connects them to "
                         "ground, so their voltage is undefined", net.path)


def parameter_env(net: Netlist, defaults: Mapping[str, Any], order: list[str], torch: Any,
                  values: Mapping[str, Any]) -> dict[str, Any]:
    """Parameter environment: overrides (as float64 tensors, or numpy when ``torch`` is
    None), then every dependent expression re-evaluated."""
    env: dict[str, Any] = dict(defaults)
    changed: set[str] = set()
    for k, v in values.items():
        key = k.lower()
        if key not in env:
            raise InputError(f"no parameter '{k}' in the circuit", net.path)
        if torch is None:
            import numpy as np

            env[key] = np.asarray(v, dtype=np.float64)
        else:
            env[key] = v if isinstance(v, torch.Tensor) else torch.as_tensor(
                v, dtype=torch.float64)
        changed.add(key)
    if changed:
        for name in order:
            if name in changed:
                continue
            expr = net.param_exprs[name]
            if ex.names(expr) & changed:
                env[name] = ex.evaluate(expr, env)
                changed.add(name)
    return env
