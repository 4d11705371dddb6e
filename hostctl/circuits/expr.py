"""SPICE values and parameter expressions: ``10uF``, ``2.2k``, ``{2*R_low}``.

An expression is kept as normalised text (lower-case names, plain float literals, ``**``
for powers) so that subcircuit parameters can be substituted textually when instances are
flattened, and evaluated later with floats (defaults) or torch tensors (the solver), which
is what makes every element value differentiable in the parameters it names.
"""

from __future__ import annotations

import ast
import math
import re
from collections.abc import Mapping
from functools import lru_cache

SUFFIXES = {"f": -15, "p": -12, "n": -9, "u": -6, "m": -3, "k": 3, "g": 9, "t": 12}
_NUMBER = re.compile(r"(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?")
_TOKEN = re.compile(r"\s*(?:(?P<num>(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?)(?P<suf>[a-z_]*)"
                    r"|(?P<name>[a-z_][a-z0-9_]*)|(?P<op>\*\*|[-+*/()^,]))")
#: names an expression may use without a ``.param``
CONSTANTS = {"pi": math.pi}


class ExprError(ValueError):
    """A value or expression that cannot be read (the parser adds file:line)."""


def scaled(number: str, suffix: str) -> float:
    """``number`` times its SPICE scale suffix; unknown trailing letters are units (``10uF``).

    Powers of ten go into the exponent (``10u`` is exactly ``10e-6``, as written).
    """
    s = suffix.lower()
    if s.startswith("mil"):
        return float(number) * 25.4e-6
    p = 6 if s.startswith("meg") else SUFFIXES.get(s[:1], 0)
    if not p:
        return float(number)
    if "e" in number:
        return float(number) * 10.0 ** p
    return float(f"{number}e{p}")


def parse_number(text: str) -> float:
    """``1u`` -> 1e-6, ``10uF`` -> 1e-5, ``1meg`` -> 1e6, ``2.5`` -> 2.5."""
    t = text.strip().lower()
    sign = 1.0
    if t[:1] in "+-":
        sign, t = (-1.0 if t[0] == "-" else 1.0), t[1:]
    m = _NUMBER.match(t)
    if not m or not re.fullmatch(r"[a-z]*", t[m.end():]):
        raise ExprError(f"'{text}' is not a number")
    return sign * scaled(m.group(0), t[m.end():])


def normalise(text: str) -> str:
    """Expression text -> normalised text; raises ExprError when it is not one."""
    src = text.strip().lower()
    if src.startswith("{") and src.endswith("}"):
        src = src[1:-1]
    out, pos = [], 0
    while pos < len(src):
        if src[pos:].isspace():
            break
        m = _TOKEN.match(src, pos)
        if not m or m.end() == pos:
            raise ExprError(f"cannot read '{text}' at '{src[pos:].strip()}'")
        pos = m.end()
        if m.group("num") is not None:
            out.append(repr(scaled(m.group("num"), m.group("suf"))))
        elif m.group("name") is not None:
            out.append(m.group("name"))
        else:
            out.append("**" if m.group("op") == "^" else m.group("op"))
    if not out:
        raise ExprError("empty value")
    expr = " ".join(out)
    compile_expr(expr)  # syntax check now, where the file and line are known
    return expr


def names(expr: str) -> set[str]:
    """Parameter names an expression uses (constants excluded)."""
    return {n for n in _names(expr) if n not in CONSTANTS}


@lru_cache(maxsize=4096)
def _names(expr: str) -> frozenset[str]:
    tree = ast.parse(expr, mode="eval")
    return frozenset(n.id for n in ast.walk(tree) if isinstance(n, ast.Name))


def substitute(expr: str, mapping: Mapping[str, str]) -> str:
    """Replace parameter names by (parenthesised) expressions: subcircuit flattening."""
    if not mapping:
        return expr
    toks = expr.split(" ")
    return " ".join(f"( {mapping[t]} )" if t in mapping else t for t in toks)


_ALLOWED = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Constant, ast.Name, ast.Load,
            ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow, ast.USub, ast.UAdd)


@lru_cache(maxsize=4096)
def compile_expr(expr: str):
    """Checked code object of a normalised expression (arithmetic on names only)."""
    try:
        tree = ast.parse(expr, mode="eval")
    except SyntaxError:
        raise ExprError(f"cannot read expression '{expr}'") from None
    for node in ast.walk(tree):
        if not isinstance(node, _ALLOWED):
            raise ExprError(f"unsupported in expression '{expr}': {type(node).__name__}")
    return compile(tree, "<expr>", "eval")


def evaluate(expr: str, env: Mapping[str, object]):
    """Value of a normalised expression with ``env`` (floats or tensors) for its names."""
    scope = dict(CONSTANTS)
    scope.update(env)
    return eval(compile_expr(expr), {"__builtins__": {}}, scope)  # noqa: S307 - checked AST


def constant(expr: str) -> float | None:
    """The number a normalised expression is, if it uses no parameter."""
    if names(expr):
        return None
    return float(evaluate(expr, {}))


def exponents(expr: str, leaves: frozenset[str], defs: Mapping[str, str]
              ) -> dict[str, float] | None:
    """``expr`` as ``c * prod p**a`` over the ``leaves`` (``c`` free of them): ``{p: a}``,
    or None when it is no such monomial (a sum with a leaf in it, a leaf in an exponent).

    Names defined in ``defs`` (``.param``) are followed, so ``{R_low/S_low}`` and
    ``.param R2={2*R1}`` with ``{R2}`` both qualify; this is what lets the numpy program
    differentiate an element value by the chain rule: ``d v / d log p = a v``."""
    return _exponents(expr, leaves, tuple(sorted(defs.items())))


@lru_cache(maxsize=4096)
def _exponents(expr: str, leaves: frozenset[str], defs: tuple[tuple[str, str], ...]
               ) -> dict[str, float] | None:
    d = dict(defs)

    def walk(node: ast.AST) -> dict[str, float] | None:
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Constant):
            return {}
        if isinstance(node, ast.Name):
            if node.id in leaves:
                return {node.id: 1.0}
            if node.id in d:
                return _exponents(d[node.id], leaves, defs)
            return {}
        if isinstance(node, ast.UnaryOp):
            return walk(node.operand)
        if not isinstance(node, ast.BinOp):
            return None
        a, b = walk(node.left), walk(node.right)
        if a is None or b is None:
            return None
        if isinstance(node.op, ast.Mult | ast.Div):
            sign = 1.0 if isinstance(node.op, ast.Mult) else -1.0
            out = dict(a)
            for k, v in b.items():
                out[k] = out.get(k, 0.0) + sign * v
            return {k: v for k, v in out.items() if v != 0.0}
        if isinstance(node.op, ast.Pow):
            if b:
                return None
            power = constant(ast.unparse(node.right))
            return None if power is None else {k: v * power for k, v in a.items()}
        return {} if not a and not b else None   # a sum: only of things free of the leaves

    out = walk(ast.parse(expr, mode="eval"))
    return None if out is None else dict(out)
