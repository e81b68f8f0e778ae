"""Children that a test interrupts with Ctrl-C (SIGINT), whatever the test runner inherited.

A shell without job control starts background commands (`make test &`, a CI runner's `nohup ... &`) with SIGINT
ignored, and children inherit that; Python then installs no KeyboardInterrupt handler, so a `sweetspot run` under
such a runner would ignore the test's Ctrl-C, as it should. A test that sends Ctrl-C starts its child as a terminal
would: SIGINT at its default."""

from __future__ import annotations

import signal


def sigint_as_in_a_terminal() -> None:
    """`preexec_fn` for `subprocess.Popen`: the child starts with SIGINT's default disposition."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
