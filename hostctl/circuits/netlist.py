"""A SPICE-subset netlist parser: the one way hostctl describes a circuit.

Reads what ``ngspice -b`` reads for an AC analysis of a passive filter with buffers:
R, C, L, V, I, E (VCVS), X (subcircuits, flattened with their nodes renamed
``instance.node``), ``.param``, ``.subckt``/``.ends`` (with ``params:`` defaults),
``.include``, ``+`` continuations, ``*``/``;``/``$`` comments and SPICE suffixes.
hostctl's own information rides in ``*@`` comments that ngspice ignores (see
``presets/README.md``). Names are case-insensitive (kept lower-case); parameters keep the
spelling of their ``.param`` for display.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from hostctl.circuits import expr as ex
from hostctl.circuits.directives import Directives, parse_directive, validate
from hostctl.errors import InputError

GROUND = frozenset({"0", "gnd"})
#: element letter -> number of nodes
ARITY = {"r": 2, "c": 2, "l": 2, "v": 2, "i": 2, "e": 4}
#: dot-commands of an analysis or output that hostctl has no use for
IGNORED = {".ac", ".op", ".dc", ".tran", ".noise", ".print", ".plot", ".save", ".option",
           ".options", ".temp", ".title", ".meas", ".measure", ".probe", ".global", ".csparam",
           ".width", ".nodeset", ".ic", ".four", ".sens", ".tf", ".pz", ".disto"}


@dataclass(frozen=True)
class Element:
    """One flattened element. ``value`` is a normalised expression (``expr`` module)."""

    name: str                   # lower-case, instance path first: "xa0.ccpl"
    kind: str                   # R C L V I E
    nodes: tuple[str, ...]      # 2, or 4 for E: out+ out- ctl+ ctl-
    value: str                  # ohm / farad / henry / gain / AC magnitude (V, I)
    where: str                  # file:line
    phase_deg: float = 0.0      # AC phase of a V or I source


@dataclass(frozen=True)
class Netlist:
    """A flattened circuit: elements, parameters (defaults and expressions), directives."""

    path: str
    elements: tuple[Element, ...]
    #: default value of each parameter, keyed by its ``.param`` spelling
    params: dict[str, float]
    #: lower-case name -> normalised expression (the truth; ``params`` is its evaluation)
    param_exprs: dict[str, str]
    #: lower-case name -> display spelling
    names: dict[str, str]
    directives: Directives = field(default_factory=Directives)

    @property
    def nodes(self) -> tuple[str, ...]:
        """Non-ground nodes in order of appearance."""
        seen: dict[str, None] = {}
        for e in self.elements:
            for n in e.nodes:
                if n not in GROUND:
                    seen.setdefault(n, None)
        return tuple(seen)

    def param(self, name: str) -> str | None:
        """Display spelling of a parameter named case-insensitively, or None."""
        return self.names.get(name.lower())


@dataclass
class _Subckt:
    name: str
    ports: tuple[str, ...]
    defaults: dict[str, str]            # local param -> expression (outer scope)
    body: list[tuple[str, list[str]]]   # (where, tokens)
    where: str


@dataclass
class _State:
    params: dict[str, tuple[str, str]] = field(default_factory=dict)   # name -> (expr, where)
    names: dict[str, str] = field(default_factory=dict)
    subckts: dict[str, _Subckt] = field(default_factory=dict)
    top: list[tuple[str, list[str]]] = field(default_factory=list)
    directives: list[tuple[str, str]] = field(default_factory=list)   # (where, text)


def parse_file(path: str | Path) -> Netlist:
    """Parse and flatten a netlist file (its first line is the title, as in SPICE)."""
    p = Path(path)
    st = _State()
    lines = _read(p, title=True, stack=())
    _collect(lines, st)
    return _finish(str(p), st)


def parse_text(text: str, path: str = "<netlist>") -> Netlist:
    """Parse netlist text (first line a title); includes resolve relative to ``path``."""
    st = _State()
    lines = _logical(text.splitlines(), str(path), Path(path), title=True, stack=(str(path),))
    _collect(lines, st)
    return _finish(str(path), st)


# --- reading: files, includes, continuations, comments --------------------------------

def _read(p: Path, *, title: bool, stack: tuple[str, ...]) -> list[tuple[str, str]]:
    key = str(p.resolve()) if p.exists() else str(p)
    if key in stack:
        raise InputError("includes itself (an .include cycle)", str(p))
    try:
        raw = p.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError("no such netlist file", str(p)) from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read netlist: {e}", str(p)) from None
    return _logical(raw.splitlines(), str(p), p, title=title, stack=stack + (key,))


def _logical(raw: list[str], name: str, p: Path, *, title: bool,
             stack: tuple[str, ...]) -> list[tuple[str, str]]:
    """(where, text) logical lines: continuations joined, comments gone, includes inlined."""
    out: list[tuple[str, str]] = []
    in_control = False
    for i, line in enumerate(raw, start=1):
        where = f"{name}:{i}"
        s = line.strip()
        if title and i == 1 and not s.startswith("*@"):
            continue
        low = s.lower()
        if in_control:
            in_control = not low.startswith(".endc")
            continue
        if s.startswith("*@"):
            out.append((where, s))
            continue
        if not s or s.startswith("*"):
            continue
        s = _strip_comment(s)
        if not s:
            continue
        if s.startswith("+"):
            if not out or out[-1][1].startswith("*@"):
                raise InputError("continuation '+' with no line before it", name, i)
            out[-1] = (out[-1][0], out[-1][1] + " " + s[1:].strip())
            continue
        low = s.lower()
        if low.startswith(".control"):
            in_control = True
        elif low.split()[0] == ".end":
            break
        else:
            out.append((where, s))
    # includes after joining, so a continued .include line is whole
    res: list[tuple[str, str]] = []
    for where, s in out:
        if s.lower().startswith(".include") or s.lower().startswith(".inc "):
            parts = s.split(None, 1)
            if len(parts) < 2:
                raise InputError(".include needs a file name", *_loc(where))
            target = parts[1].strip().strip("'\"")
            res.extend(_read(p.parent / target, title=False, stack=stack))
        else:
            res.append((where, s))
    return res


def _strip_comment(s: str) -> str:
    s = s.split(";", 1)[0]
    m = re.search(r"(^|\s)\$", s)
    return (s[:m.start()] if m else s).strip()


def _loc(where: str) -> tuple[str, int]:
    path, _, line = where.rpartition(":")
    return path, int(line)


def _err(where: str, msg: str) -> InputError:
    return InputError(msg, *_loc(where))


def _tokens(s: str) -> list[str]:
    """Split on blanks outside braces/parentheses; ``a = 1`` becomes ``a=1``."""
    s = re.sub(r"\s*=\s*", "=", s)
    toks, cur, depth = [], [], 0
    for ch in s:
        if ch in "{(":
            depth += 1
        elif ch in "})":
            depth -= 1
        if (ch.isspace() or ch == ",") and depth == 0:
            if cur:
                toks.append("".join(cur))
                cur = []
        else:
            cur.append(ch)
    if cur:
        toks.append("".join(cur))
    return toks


# --- collecting: params, subcircuits, elements ----------------------------------------

def _collect(lines: list[tuple[str, str]], st: _State) -> None:
    sub: _Subckt | None = None
    for where, s in lines:
        if s.startswith("*@"):
            st.directives.append((where, s[2:].strip()))
            continue
        toks = _tokens(s)
        head = toks[0].lower()
        if head == ".subckt":
            if sub is not None:
                raise _err(where, f".subckt inside .subckt {sub.name} (nesting definitions is "
                                  "not supported)")
            sub = _subckt(where, toks)
            if sub.name in st.subckts:
                raise _err(where, f"subcircuit '{sub.name}' defined twice")
        elif head == ".ends":
            if sub is None:
                raise _err(where, ".ends without .subckt")
            st.subckts[sub.name] = sub
            sub = None
        elif head == ".param":
            for name, val in _assignments(where, toks[1:]):
                if sub is not None:
                    sub.defaults[name.lower()] = val
                else:
                    st.params[name.lower()] = (val, where)
                    st.names.setdefault(name.lower(), name)
        elif head.startswith("."):
            if head not in IGNORED and head != ".model":
                raise _err(where, f"unsupported directive '{toks[0]}'")
        elif sub is not None:
            sub.body.append((where, toks))
        else:
            st.top.append((where, toks))
    if sub is not None:
        raise _err(sub.where, f".subckt {sub.name} has no .ends")


def _assignments(where: str, toks: list[str]) -> list[tuple[str, str]]:
    out = []
    for t in toks:
        if t.lower() == "params:":
            continue
        name, eq, val = t.partition("=")
        if not eq or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) or not val:
            raise _err(where, f"'{t}' is not NAME=VALUE")
        try:
            out.append((name, ex.normalise(val)))
        except ex.ExprError as e:
            raise _err(where, f"parameter {name}: {e}") from None
    return out


def _subckt(where: str, toks: list[str]) -> _Subckt:
    if len(toks) < 2:
        raise _err(where, ".subckt needs a name")
    ports = [t for t in toks[2:] if "=" not in t and t.lower() != "params:"]
    defaults = dict((k.lower(), v) for k, v in
                    _assignments(where, [t for t in toks[2:] if "=" in t]))
    return _Subckt(toks[1].lower(), tuple(p.lower() for p in ports), defaults, [], where)


# --- flattening -------------------------------------------------------------------------

def _finish(path: str, st: _State) -> Netlist:
    elements: list[Element] = []
    _flatten(st.top, st, "", {}, {}, elements, ())
    if not elements:
        raise InputError("no circuit elements", path)
    exprs = {k: v for k, (v, _) in st.params.items()}
    for e in elements:
        for n in ex.names(e.value) - exprs.keys():
            raise _err(e.where, f"{e.name}: undefined parameter '{n}'")
    params = _defaults(st)
    seen: dict[str, str] = {}
    for e in elements:
        if e.name in seen:
            raise _err(e.where, f"element '{e.name}' defined twice (first at {seen[e.name]})")
        seen[e.name] = e.where
    net = Netlist(path, tuple(elements), params, exprs, dict(st.names))
    dirs = Directives()
    for where, text in st.directives:
        try:
            dirs = parse_directive(dirs, text)
        except ValueError as e:
            raise _err(where, str(e)) from None
    try:
        dirs = validate(dirs, net)
    except ValueError as e:
        raise InputError(str(e), path) from None
    return Netlist(path, net.elements, params, exprs, dict(st.names), dirs)


def _defaults(st: _State) -> dict[str, float]:
    """Evaluate every parameter in dependency order (cycles and unknown names are errors)."""
    values: dict[str, float] = {}
    state: dict[str, int] = {}

    def visit(name: str, where: str) -> float:
        if name in values:
            return values[name]
        if name not in st.params:
            raise _err(where, f"undefined parameter '{name}'")
        if state.get(name) == 1:
            raise _err(where, f"parameter '{name}' depends on itself")
        state[name] = 1
        val, w = st.params[name]
        env = {n: visit(n, w) for n in ex.names(val)}
        try:
            values[name] = float(ex.evaluate(val, env))
        except (ZeroDivisionError, OverflowError, ValueError):
            raise _err(w, f"parameter '{name}' = {val} cannot be evaluated") from None
        return values[name]

    for name, (_, where) in st.params.items():
        visit(name, where)
    return {st.names[k]: v for k, v in values.items()}


def _flatten(body, st: _State, prefix: str, ports: dict[str, str], local: dict[str, str],
             out: list[Element], stack: tuple[str, ...]) -> None:
    """Append ``body``'s elements with nodes renamed and local parameters substituted."""

    def node(n: str) -> str:
        n = n.lower()
        if n in GROUND:
            return "0"
        return ports.get(n, prefix + n)

    for where, toks in body:
        name = toks[0].lower()
        kind = name[0]
        if kind == "x":
            _instance(where, toks, st, prefix, node, local, out, stack)
            continue
        if kind not in ARITY:
            raise _err(where, f"unknown element '{toks[0]}' (hostctl reads R, C, L, V, I, E "
                              "and X)")
        k = ARITY[kind]
        if len(toks) < k + 1:
            raise _err(where, f"{toks[0]} needs {k} nodes")
        nodes = tuple(node(t) for t in toks[1:k + 1])
        rest = toks[k + 1:]
        try:
            if kind in "vi":
                value, phase = _source(rest)
            else:
                value, phase = _value(rest, toks[0]), 0.0
        except ex.ExprError as e:
            raise _err(where, f"{toks[0]}: {e}") from None
        out.append(Element(prefix + name, kind.upper(), nodes, ex.substitute(value, local),
                           where, phase))


def _value(rest: list[str], name: str) -> str:
    vals = [t for t in rest if "=" not in t]
    if not vals:
        raise ex.ExprError("missing value")
    if len(vals) > 1:
        raise ex.ExprError(f"unexpected '{vals[1]}' after the value")
    v = vals[0]
    if not v.startswith("{") and re.match(r"[A-Za-z_]", v):
        raise ex.ExprError(f"'{v}' is not a number (write {{{v}}} for a parameter)")
    return ex.normalise(v)


def _source(rest: list[str]) -> tuple[str, float]:
    """AC magnitude and phase of ``DC 0 AC 1 [phase]`` (other specs do not matter in AC)."""
    low = [t.lower() for t in rest]
    if "ac" not in low:
        return "0.0", 0.0
    i = low.index("ac")
    mag = ex.normalise(rest[i + 1]) if i + 1 < len(rest) and _is_value(rest[i + 1]) else "1.0"
    phase = 0.0
    if i + 2 < len(rest) and _is_value(rest[i + 2]):
        phase = ex.parse_number(rest[i + 2])
    return mag, phase


def _is_value(t: str) -> bool:
    return t.startswith("{") or bool(re.match(r"[-+.\d]", t))


def _instance(where, toks, st: _State, prefix, node, local, out, stack) -> None:
    plain = [t for t in toks[1:] if "=" not in t and t.lower() != "params:"]
    if not plain:
        raise _err(where, f"{toks[0]} needs nodes and a subcircuit name")
    sname = plain[-1].lower()
    sub = st.subckts.get(sname)
    if sub is None:
        raise _err(where, f"{toks[0]}: unknown subcircuit '{plain[-1]}'")
    if sname in stack:
        raise _err(where, f"{toks[0]}: subcircuit '{sname}' instantiates itself")
    nodes = plain[:-1]
    if len(nodes) != len(sub.ports):
        raise _err(where, f"{toks[0]}: {sname} has {len(sub.ports)} nodes "
                          f"({' '.join(sub.ports)}), got {len(nodes)}")
    given = dict((k.lower(), ex.substitute(v, local)) for k, v in
                 _assignments(where, [t for t in toks[1:] if "=" in t]))
    for k in given.keys() - sub.defaults.keys():
        raise _err(where, f"{toks[0]}: {sname} has no parameter '{k}'")
    inner: dict[str, str] = {}
    for k, v in sub.defaults.items():
        inner[k] = given[k] if k in given else ex.substitute(v, {**local, **inner})
    ports = {p: node(n) for p, n in zip(sub.ports, nodes, strict=True)}
    _flatten(sub.body, st, prefix + toks[0].lower() + ".", ports, inner, out,
             stack + (sname,))
