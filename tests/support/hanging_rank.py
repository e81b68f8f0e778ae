"""The trainer's entrypoint, except that one rank stops answering at its first gradient sum (a stuck GPU, a wedged
node): the other ranks must give up after the process group's timeout, report the failure and exit, not wait forever.

    torchrun ... tests/support/hanging_rank.py --config FILE      (the rank in $SWEETSPOT_TEST_HANGING_RANK hangs)
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any

from sweetspot_trainer import distributed
from sweetspot_trainer.__main__ import main

HANGING_RANK_ENV = "SWEETSPOT_TEST_HANGING_RANK"


def _hang(*_: Any) -> Any:
    threading.Event().wait()  # until torchrun ends this process


if __name__ == "__main__":
    if os.environ.get("RANK") == os.environ[HANGING_RANK_ENV]:
        distributed.sum_gradients = _hang  # type: ignore[assignment]
    sys.exit(main())
