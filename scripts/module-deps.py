#!/usr/bin/env python3
"""Import circles between forge's modules.

    scripts/module-deps.py            the circles (strongly connected groups), exit 1 if any
    scripts/module-deps.py --edges    every edge `a -> b` with the file and line that makes it
    scripts/module-deps.py --top      the same for top-level modules (src/check/** is one: check)

A module is a file under src/ (src/check/wheel.rs is check::wheel; a mod.rs is its folder).
An edge a -> b is any `crate::b...` path in a's file (use lines and inline paths), and any
`super::` path, resolved to the module it names. Edges between a module and its own ancestor
or descendant are left out (a parent declares its children; a child may use its parent's
items), so a circle here is always between modules that should stand apart.
"""
import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")


def module_of(path):
    rel = os.path.relpath(path, ROOT)[:-3].split(os.sep)
    if rel[-1] in ("mod", "lib", "main"):
        rel = rel[:-1]
    return "::".join(rel)


def files():
    for d, _, fs in os.walk(ROOT):
        for f in fs:
            if f.endswith(".rs"):
                yield os.path.join(d, f)


def strip_tests(text):
    # leave out `#[cfg(test)] mod tests { ... }` blocks written inline
    out, skip, depth = [], False, 0
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        if not skip and line.strip() == "#[cfg(test)]" and i + 1 < len(lines) and re.match(r"\s*mod \w+ \{", lines[i + 1]):
            skip, depth = True, 0
            out.append("")
            i += 1
            continue
        if skip:
            depth += line.count("{") - line.count("}")
            out.append("")
            if depth <= 0 and "}" in line:
                skip = False
            i += 1
            continue
        out.append(line)
        i += 1
    return out


def main():
    mods = {module_of(p): p for p in files()}
    known = set(mods)
    # names the crate root re-exports (`pub use error::{Error, Result};` makes crate::Error error's)
    roots = {}
    with open(os.path.join(ROOT, "lib.rs")) as fh:
        for m_, names in re.findall(r"pub use (\w+)::\{?([\w, ]+)\}?;", fh.read()):
            for n_ in names.split(","):
                roots[n_.strip()] = m_
    edges = {}
    for m, p in mods.items():
        if m.endswith("tests") or m.split("::")[-1] == "tests":
            continue
        with open(p) as fh:
            lines = strip_tests(fh.read())
        # `use crate::{a, b::c}` groups: expand the first level of braces
        text = "\n".join(lines)
        for n, line in enumerate(lines, 1):
            code = line.split("//")[0]
            refs = re.findall(r"crate::([A-Za-z_][\w:]*)", code)
            for grp in re.findall(r"crate::\{([^}]*)\}?", code):
                refs += [g.strip() for g in grp.split(",") if g.strip()]
            for sup in re.findall(r"((?:super::)+)([A-Za-z_][\w:]*)", code):
                depth = sup[0].count("super::")
                base = m.split("::") if not p.endswith("mod.rs") else m.split("::") + ["_"]
                base = base[: len(base) - depth - 0]
                # super from a file module x::y is x; from x/y/mod.rs it is x
                parts = (m.split("::")[:-depth] if m else [])
                refs.append("::".join(parts + [sup[1]]) if parts else sup[1])
            for r in refs:
                parts = [x for x in r.split("::") if x]
                if parts and parts[0] in roots:
                    parts = [roots[parts[0]]] + parts
                target = None
                for k in range(len(parts), 0, -1):
                    cand = "::".join(parts[:k])
                    if cand in known:
                        target = cand
                        break
                if not target or target == m:
                    continue
                a, b = m + "::", target + "::"
                if a.startswith(b) or b.startswith(a) or m == "" or target == "":
                    continue
                edges.setdefault(m, {}).setdefault(target, []).append(f"{os.path.relpath(p, os.path.dirname(ROOT))}:{n}")
    if "--top" in sys.argv:
        top = {}
        for a in edges:
            for b, where in edges[a].items():
                ta, tb = a.split("::")[0], b.split("::")[0]
                if ta != tb:
                    top.setdefault(ta, {}).setdefault(tb, []).extend(f"{w} ({a} -> {b})" for w in where)
        edges, known = top, {m.split("::")[0] for m in known if m}
    if "--edges" in sys.argv:
        for a in sorted(edges):
            for b in sorted(edges[a]):
                print(f"{a} -> {b}   {edges[a][b][0]}")
        return 0
    # Tarjan
    index, low, on, stack, sccs, counter = {}, {}, set(), [], [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                sccs.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(known):
        if v not in index:
            visit(v)
    print(f"{len(known)} modules, {sum(len(e) for e in edges.values())} edges between modules that stand apart")
    if not sccs:
        print("no import circle")
        return 0
    for comp in sccs:
        print("circle: " + ", ".join(comp))
        for a in comp:
            for b in comp:
                if b in edges.get(a, {}):
                    print(f"    {a} -> {b}   ({edges[a][b][0]})")
    return 1


if __name__ == "__main__":
    sys.exit(main())
