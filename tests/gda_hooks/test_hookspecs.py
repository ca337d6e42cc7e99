"""The contract itself: every hook is documented, matches an injection point, and has a test."""

import ast
import dataclasses
import inspect
import pathlib
import re

from gda_core.composition import CONSTRUCTION, LIFECYCLE_FIELDS
from gda_hooks import specs
from stylegan2_ada.extensions import Extensions

HERE = pathlib.Path(__file__).parent


def hook_tests():
    """Names of the test_hook_<name> functions in tests/gda_hooks/, read without importing."""
    names = []
    for path in sorted(HERE.glob('test_*.py')):
        tree = ast.parse(path.read_text())
        names += [node.name for node in tree.body
                  if isinstance(node, ast.FunctionDef) and node.name.startswith('test_hook_')]
    return names


def test_every_hook_has_a_test_and_every_hook_test_a_hook():
    tested = {name[len('test_hook_'):] for name in hook_tests()}
    assert specs.HOOK_NAMES, 'no hook specifications found'
    assert sorted(set(specs.HOOK_NAMES) - tested) == [], 'hooks without a test_hook_<name>'
    assert sorted(tested - set(specs.HOOK_NAMES)) == [], 'test_hook_<name> for no hook'
    assert len(hook_tests()) == len(tested), 'a hook test is defined twice'


def test_every_engine_injection_point_is_a_hook_of_the_same_name_that_the_host_fills():
    fields = {field.name for field in dataclasses.fields(Extensions)}
    assert sorted(fields - set(specs.HOOK_NAMES)) == []
    assert set(CONSTRUCTION) | set(LIFECYCLE_FIELDS) == fields


def test_every_hook_documents_when_what_and_how():
    for name in specs.HOOK_NAMES:
        doc = inspect.getdoc(getattr(specs, name))
        assert doc and len(doc.split()) >= 15, f'{name} needs a docstring saying when, what, how'
        signature = inspect.signature(getattr(specs, name))
        assert signature.return_annotation is not inspect.Signature.empty, f'{name} is untyped'


DOCS = pathlib.Path(__file__).resolve().parents[2] / 'docs'


def table_first_cells(path, heading):
    """The first cells of the first table under `heading` in a markdown file."""
    lines = path.read_text().split(heading, 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith('|'))
    rows = []
    for line in lines[start + 2:]:   # past the header and its |---| line
        if not line.startswith('|'):
            break
        rows.append(line.split('|')[1].strip())
    return rows


def test_the_hook_tables_of_the_docs_list_the_hooks_of_specs():
    """hooks/specs.py is the one list of hooks; the docs' tables follow it."""
    glance = [re.match(r'`(\w+)\(', cell).group(1)
              for cell in table_first_cells(DOCS / 'plugins.md', '## Hooks at a glance')]
    assert glance == specs.HOOK_NAMES
    names = {name for cell in table_first_cells(DOCS / 'hooks.md', '## 1. The methods')
             for name in re.findall(r'`(\w+)`', cell)}
    assert names == set(specs.HOOK_NAMES) - {'options'}   # every plugin has options: left out
