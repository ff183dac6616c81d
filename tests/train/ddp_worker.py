"""The ``mtlexport`` CLI as a torchrun worker for the DDP tests, with two test-only hooks.

``MTLEXPORT_TEST_DUMP=DIR``: at the end of training every rank saves its model and
loss-weighting tensors to ``DIR/rank{r}.pt`` (to compare the replicas).
``MTLEXPORT_TEST_FAULT=RANK:STEP:MODE``: rank RANK, when starting optimizer step STEP (counted
from 1 in this process), kills itself with SIGKILL (``kill``) or raises a DataError (``raise``).
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

import torch

from mtlexport.errors import DataError
from mtlexport.train import loop


def _install_hooks() -> None:
    rank = int(os.environ.get("RANK", "0"))
    dump = os.environ.get("MTLEXPORT_TEST_DUMP")
    if dump:
        result = loop._Run._result

        def dumping(self: Any, test: Any) -> Any:
            state = {**{f"model.{k}": v.detach().clone() for k, v in self.model.state_dict().items()},
                     **{f"loss_weighting.{k}": v.detach().clone() for k, v in self.weighting.state_dict().items()}}
            torch.save(state, Path(dump) / f"rank{rank}.pt")
            return result(self, test)

        loop._Run._result = dumping  # type: ignore[method-assign]
    fault = os.environ.get("MTLEXPORT_TEST_FAULT")
    if fault:
        fault_rank, fault_step, mode = fault.split(":")
        if int(fault_rank) == rank:
            set_lr, calls = loop.set_lr, [0]

            def failing(*args: Any, **kwargs: Any) -> Any:
                calls[0] += 1
                if calls[0] == int(fault_step):
                    if mode == "kill":
                        os.kill(os.getpid(), signal.SIGKILL)
                    raise DataError(f"injected failure on rank {rank} at step {fault_step}")
                return set_lr(*args, **kwargs)

            loop.set_lr = failing  # type: ignore[assignment]


if __name__ == "__main__":
    _install_hooks()
    from mtlexport.cli.main import main

    sys.exit(main())
