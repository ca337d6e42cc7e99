"""gda_plugins: the built-in method plugins, one package per paper, each registered under the
`gda.plugins` entry-point group exactly like a third-party plugin."""
