"""How big the code is, by the measures the maintainers hold it to: lines of ``n3core/*.py``
per module split into code, docstring, comment and blank lines; lines of ``experiments/`` and
``benchmarks/``; the longest functions of ``n3core`` and ``app``; README lines; lines of the
docs and code that cite an issue number.

    .venv/bin/python benchmarks/code_size.py [--out benchmarks/results/code_size.json]
"""
from __future__ import annotations

import argparse
import ast
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def line_kinds(path: Path) -> dict[str, int]:
    """``{"lines", "code", "docstring", "comment", "blank"}`` of one Python file."""
    src = path.read_text(encoding="utf-8")
    doc = set()
    for node in ast.walk(ast.parse(src)):
        body = getattr(node, "body", None)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body \
                and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
                and isinstance(body[0].value.value, str):
            doc.update(range(body[0].lineno, body[0].end_lineno + 1))
    out = {"lines": 0, "code": 0, "docstring": 0, "comment": 0, "blank": 0}
    for i, line in enumerate(src.splitlines(), 1):
        s = line.strip()
        kind = "blank" if not s else "docstring" if i in doc else "comment" if s.startswith("#") else "code"
        out[kind] += 1
        out["lines"] += 1
    return out


def longest_functions(paths: list[Path], n: int = 5) -> list[dict]:
    funcs = [{"function": f"{p.relative_to(ROOT)}:{node.name}", "lines": node.end_lineno - node.lineno + 1}
             for p in paths for node in ast.walk(ast.parse(p.read_text(encoding="utf-8")))
             if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]
    return sorted(funcs, key=lambda f: -f["lines"])[:n]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "code_size.json"))
    args = ap.parse_args()
    modules = {p.name: line_kinds(p) for p in sorted((ROOT / "n3core").glob("*.py"))}
    total = {k: sum(m[k] for m in modules.values()) for k in ("lines", "code", "docstring", "comment", "blank")}
    scripts = [*sorted((ROOT / "experiments").glob("*.py")), *sorted((ROOT / "benchmarks").glob("*.py"))]
    cite = re.compile(r"issue [0-9]+", re.IGNORECASE)
    docs = [ROOT / "README.md", *(p for d in ("docs", "checkpoints", "n3core", "app") for p in (ROOT / d).rglob("*")
                                  if p.is_file() and p.suffix in (".md", ".py", ".json"))]
    report = {"n3core": total, "n3core_modules": dict(sorted(modules.items(), key=lambda kv: -kv[1]["lines"])),
              "experiments_and_benchmarks_lines": sum(len(p.read_text(encoding="utf-8").splitlines()) for p in scripts),
              "longest_functions": longest_functions(sorted((ROOT / "n3core").glob("*.py"))
                                                     + sorted((ROOT / "app").glob("*.py"))),
              "readme_lines": len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()),
              "lines_citing_an_issue": sum(bool(cite.search(line)) for p in docs
                                           for line in p.read_text(encoding="utf-8", errors="replace").splitlines())}
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(f"n3core {total['lines']} lines ({total['code']} code, {total['docstring']} docstring, "
          f"{total['comment']} comment, {total['blank']} blank); experiments + benchmarks "
          f"{report['experiments_and_benchmarks_lines']}; longest function {report['longest_functions'][0]}; "
          f"README {report['readme_lines']}; lines citing an issue {report['lines_citing_an_issue']}")


if __name__ == "__main__":
    main()
