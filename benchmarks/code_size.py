"""The largest class and function of each package, in lines (`def`/`class` line to the end).

README's architecture notes quote it: `python benchmarks/code_size.py stylegan2_ada gda_core`.
"""

import ast
import pathlib
import sys


def largest(package):
    """{'class' | 'function': (lines, 'module.py:name')} over every module under `package`."""
    best = {}
    for path in sorted(pathlib.Path(package).rglob('*.py')):
        for node in ast.walk(ast.parse(path.read_text())):
            kind = ('class' if isinstance(node, ast.ClassDef) else
                    'function' if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                    else None)
            if kind:
                size = node.end_lineno - node.lineno + 1
                if size > best.get(kind, (0,))[0]:
                    best[kind] = (size, f'{path.relative_to(package)}:{node.name}')
    return best


if __name__ == '__main__':
    for package in sys.argv[1:] or ['stylegan2_ada', 'gda_core']:
        for kind, (size, where) in sorted(largest(package).items()):
            print(f'{package}: largest {kind} {where} ({size} lines)')
