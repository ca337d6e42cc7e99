"""The gda host: plugin manager, adaptation runs built from plugin hooks, and the `gda` CLI."""
