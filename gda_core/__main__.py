"""`python -m gda_core ...` runs the `gda` command (e.g. under `torchrun -m gda_core train ...`)."""

from .cli import main

if __name__ == '__main__':
    main()
