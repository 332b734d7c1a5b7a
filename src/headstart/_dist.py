"""Which process of a distributed fit this is, from the launcher's environment, before any process group exists.

A fit on several processes runs the same command in each (Lightning re-runs it for ``--devices N``; torchrun
and SLURM start it on every machine). Only the first process (global rank 0) writes the run folder; the others
train their share and stop. The rank is needed before the run folder is made, long before Lightning has set
up its process group, so it is read the way Lightning's cluster environments read it.
"""

from __future__ import annotations

import os


def global_rank(devices_per_node: int) -> int:
    """0 for the process that writes; torchrun sets ``RANK``, SLURM ``SLURM_PROCID`` (when it runs several
    tasks), Lightning's own launcher ``NODE_RANK`` and ``LOCAL_RANK`` in the processes it starts."""
    env = os.environ
    if "RANK" in env:
        return int(env["RANK"])
    if int(env.get("SLURM_NTASKS", "1")) > 1 and "SLURM_PROCID" in env:
        return int(env["SLURM_PROCID"])
    return int(env.get("NODE_RANK", "0")) * devices_per_node + int(env.get("LOCAL_RANK", "0"))


__all__ = ["global_rank"]
