"""gda-plugin-example: a third-party gda plugin, installed like any other distribution.

The one line that makes it a gda plugin is the `gda.plugins` entry point: `example` is the name
used with `gda train --plugin example`, and `gda_plugin_example` the module holding the hooks.
"""

from setuptools import setup

setup(
    name='gda-plugin-example',
    version='0.1.0',
    description='Example gda plugin: a generator loss term matching the target mean colour',
    py_modules=['gda_plugin_example'],
    python_requires='>=3.9',
    install_requires=['gda'],
    entry_points={'gda.plugins': ['example = gda_plugin_example']},
)
