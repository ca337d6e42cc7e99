"""The run's log.txt: every line the run prints, kept in its directory (as NVIDIA's log.txt).

Lines logged before the run directory exists (the parameter table) are held and written once it
does; a resumed run appends to the same file. Only rank 0 logs.
"""

import os


class RunLog:
    def __init__(self, echo=print):
        self.echo = echo
        self.path = None
        self._pending = []

    def __call__(self, message=''):
        self.echo(message)
        if self.path is None:
            self._pending.append(str(message))
        else:
            self._append([str(message)])

    def record(self, message):
        """Write `message` to log.txt only (the CLI prints errors itself, on stderr)."""
        if self.path is None:
            self._pending.append(str(message))
        else:
            self._append([str(message)])

    def attach(self, run_dir):
        """Start writing RUN_DIR/log.txt (appending), with the lines held so far."""
        self.path = os.path.join(run_dir, 'log.txt')
        pending, self._pending = self._pending, []
        self._append(pending)

    def _append(self, lines):
        if lines:
            with open(self.path, 'a') as file:
                file.write(''.join(line + '\n' for line in lines))


def silent(*args, **kwargs):
    """The log of ranks other than 0."""


silent.record = silent
