"""gda_hooks: the contract between the gda host and method plugins (pluggy hook specifications)."""
