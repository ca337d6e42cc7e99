"""`gda plugins`: what is installed, what each plugin implements and takes, and what failed to load."""

import json

import click

from .composition import option_flag, parse_options
from .plugins import AUTOLOAD_ENV, default_manager


def describe_plugin(manager, plugin):
    """One installed plugin as JSON-ready data (options with their flags, proposed defaults)."""
    options = [dict(name=o.name, flag=option_flag(plugin.name, o.name), type=o.type.__name__,
                    default=o.default, help=o.help,
                    choices=list(o.choices) if o.choices is not None else None)
               for o in plugin.options]
    try:
        values, _ = parse_options(plugin, {})
        proposals = manager.call(plugin.name, 'propose_defaults', options=values) or {}
    except Exception as error:   # a plugin bug must not break the listing
        proposals = {'error': f'{type(error).__name__}: {error}'}
    return dict(name=plugin.name, version=plugin.version, distribution=plugin.distribution,
                status='ok', hooks=plugin.hooks, options=options, proposed_defaults=proposals)


def describe_all(manager):
    listed = [describe_plugin(manager, manager.plugins[name]) for name in sorted(manager.plugins)]
    listed += [dict(name=b.name, version=b.version, distribution=b.distribution, status='failed',
                    error=b.error) for _, b in sorted(manager.broken.items())]
    return listed


def format_text(listed):
    lines = []
    for item in listed:
        origin = f'{item["distribution"] or "not installed"} {item["version"] or ""}'.strip()
        if item['status'] == 'failed':
            lines.append(f'{item["name"]}  ({origin})  FAILED TO LOAD: {item["error"]}')
            continue
        lines.append(f'{item["name"]}  ({origin})')
        lines.append(f'  hooks: {", ".join(item["hooks"]) or "none"}')
        for option in item['options']:
            default = f' [default: {option["default"]}]' if option['default'] is not None else ''
            lines.append(f'  {option["flag"]} {option["type"].upper()}  {option["help"]}{default}')
        proposals = item['proposed_defaults']
        lines.append('  proposes: ' + (', '.join(f'{k}={v}' for k, v in proposals.items())
                                       or 'no core defaults'))
    return '\n'.join(lines)


@click.command()
@click.option('--json', 'as_json', help='Print machine-readable JSON', is_flag=True)
def plugins(as_json):
    """List the installed method plugins: version, distribution, hooks, options, proposed defaults.

    Plugins that failed to load are listed with their error. Set GDA_DISABLE_PLUGIN_AUTOLOAD=1 to
    load none.
    """
    listed = describe_all(default_manager())
    if as_json:
        click.echo(json.dumps(listed, indent=2))
    elif listed:
        click.echo(format_text(listed))
    else:
        click.echo(f'No plugins installed (or {AUTOLOAD_ENV} is set).')
