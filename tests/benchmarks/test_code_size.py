"""benchmarks/code_size.py, which README's architecture notes quote."""

import code_size   # benchmarks/ is on sys.path: see conftest.py


def test_largest_counts_lines_from_the_definition_to_its_end(tmp_path):
    (tmp_path / 'sub').mkdir()
    (tmp_path / 'a.py').write_text('def f():\n    return 1\n\n\nclass C:\n    x = 1\n    y = 2\n')
    (tmp_path / 'sub' / 'b.py').write_text('def g():\n    a = 1\n    b = 2\n    return a + b\n')
    assert code_size.largest(tmp_path) == {'class': (3, 'a.py:C'), 'function': (4, 'sub/b.py:g')}
