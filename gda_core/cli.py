"""The `gda` command line: parse and validate, then call the library. No training logic here."""

import importlib
import sys

import click

from stylegan2_ada.errors import UserError, disk_full_message, is_disk_full

from .plugins import default_manager

# Sub-commands live in their own modules: 'module:attribute' of a click command.
COMMANDS = [
    'gda_core.cmd_train:train',
    'gda_core.cmd_generate:generate', 'gda_core.cmd_export:export',
    'gda_core.cmd_plugins:plugins',
    'gda_core.cmd_info:info', 'gda_core.cmd_dataset:dataset',
    'gda_core.cmd_metrics:metrics',
    'gda_core.cmd_report:report',
]


class _Group(click.Group):
    """Turns UserError (and a full disk met anywhere) into one line on stderr and the error's exit
    status (docs/errors.md), wherever it is raised."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except UserError as error:
            click.echo(f'Error: {error}', err=True)
            sys.exit(error.exit_code)
        except Exception as error:
            if not is_disk_full(error):
                raise
            click.echo(f"Error: {disk_full_message(getattr(error, 'filename', None))}", err=True)
            sys.exit(UserError.exit_code)


@click.group(cls=_Group, context_settings=dict(help_option_names=['-h', '--help']))
@click.version_option(package_name='gda')
def main():
    """gda: few-shot generative domain adaptation for StyleGAN2-ADA."""


for _spec in COMMANDS:
    _module, _attr = _spec.split(':')
    main.add_command(getattr(importlib.import_module(_module), _attr))

# Plugins' own sub-commands (register_commands hook); a clash or a failure is a warning only.
default_manager().register_commands(main, warn=lambda message: click.echo(f'Warning: {message}', err=True))
