"""Runs ``irra`` (the real CLI) and kills itself with SIGKILL at a chosen point.

Usage: ``python kill_worker.py KILL_AT -- IRRA_ARGS...`` where ``KILL_AT`` is

* ``step:N``: just before training step N (0-based, counted over the whole run) runs;
* ``write:PATTERN:K``: during the K-th atomic write (1-based, in this process) of a file whose name
  matches the glob ``PATTERN``, after half of its bytes reached the temporary file;
* ``never``: run to the end.

The kill is a real SIGKILL: no ``finally`` block, ``atexit`` handler or buffered write runs.
"""

from __future__ import annotations

import fnmatch
import io
import os
import signal
import sys
from pathlib import Path


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _kill_at_step(step: int) -> None:
    from irra.engine.trainer import Trainer

    original = Trainer.train_step

    def train_step(self, batch):  # type: ignore[no-untyped-def]
        if self.state.step == step:
            _die()
        return original(self, batch)

    Trainer.train_step = train_step  # type: ignore[method-assign]


def _kill_in_write(pattern: str, nth: int) -> None:
    import irra.fileio

    original = irra.fileio.atomic_write
    seen = [0]

    def atomic_write(path, write):  # type: ignore[no-untyped-def]
        if not fnmatch.fnmatch(Path(path).name, pattern):
            return original(path, write)
        seen[0] += 1
        if seen[0] != nth:
            return original(path, write)
        buffer = io.BytesIO()
        write(buffer)
        data = buffer.getvalue()

        def half(handle):  # type: ignore[no-untyped-def]
            handle.write(data[: len(data) // 2])
            handle.flush()
            os.fsync(handle.fileno())
            _die()

        return original(path, half)

    # Modules that imported the function by name get the wrapper too.
    irra.fileio.atomic_write = atomic_write
    for name, module in list(sys.modules.items()):
        if name.startswith("irra.") and getattr(module, "atomic_write", None) is original:
            module.atomic_write = atomic_write


def main() -> int:
    kill_at, sep, *argv = sys.argv[1:]
    assert sep == "--", "usage: kill_worker.py KILL_AT -- IRRA_ARGS..."
    import irra.cli
    import irra.engine.checkpoint
    import irra.engine.hooks
    import irra.engine.run
    import irra.model.checkpoint_io

    kind, _, spec = kill_at.partition(":")
    if kind == "step":
        _kill_at_step(int(spec))
    elif kind == "write":
        pattern, _, nth = spec.rpartition(":")
        _kill_in_write(pattern, int(nth))
    elif kind != "never":
        raise SystemExit(f"unknown kill point {kill_at!r}")
    return irra.cli.main(argv)


if __name__ == "__main__":
    sys.exit(main())
