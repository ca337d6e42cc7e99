"""Option: what a plugin declares, and how values from the CLI, the API and snapshots convert."""

import pytest

from gda_hooks import Option


@pytest.mark.parametrize('option,value,expected', [
    (Option('n', int), '3', 3),
    (Option('n', int), 4.0, 4),
    (Option('x', float), 2, 2.0),
    (Option('flag', bool), 'yes', True),
    (Option('flag', bool), 'false', False),
    (Option('mode', str, choices=('paper', 'code')), 'code', 'code'),
    (Option('policy', str, validate=lambda v: v.replace(' ', '')), 'a, b', 'a,b'),
])
def test_values_convert_to_the_declared_type(option, value, expected):
    converted = option.convert(value)
    assert converted == expected and type(converted) is type(expected)


@pytest.mark.parametrize('option,value,message', [
    (Option('n', int), 1.5, 'expected an integer'),
    (Option('n', int), True, 'expected an integer'),
    (Option('x', float), 'fast', 'expected a number'),
    (Option('flag', bool), 'maybe', 'expected true or false'),
    (Option('mode', str, choices=('paper', 'code')), 'other', "'other' is not one of paper, code"),
])
def test_ill_typed_values_are_value_errors(option, value, message):
    with pytest.raises(ValueError, match=message):
        option.convert(value)


@pytest.mark.parametrize('kwargs,message', [
    (dict(name='bad name'), 'must be letters, digits'),
    (dict(name='n', type=list), 'type must be one of int, float, str, bool'),
    (dict(name='n', type=int, choices=('1',)), 'choices need type str'),
    (dict(name='n', type=int, default='many'), 'expected an integer'),
])
def test_bad_declarations_fail_when_the_plugin_loads(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Option(**kwargs)
