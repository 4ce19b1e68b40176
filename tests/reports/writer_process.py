"""A proxy process's ledger writer, for test_rollup's multi-process test.

    python writer_process.py URL SEED GO_FILE SHARED

Waits for GO_FILE, then writes its own 1,500 sample rows (seed SEED) interleaved with the
SHARED rows every process writes (seed 0), in small batches, and exits 0 once all are in.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time

from proxy.ledger import LedgerWriter
from tests.reports.test_rollup import _process_rows


async def main(url: str, seed: int, go: str, shared: int) -> None:
    own, common = _process_rows(seed, shared), _process_rows(0, shared)
    writer = LedgerWriter(url, batch_size=25, flush_interval=0.001, maintenance_interval=None)
    await writer.start()
    deadline = time.monotonic() + 60
    while not os.path.exists(go):
        if time.monotonic() > deadline:
            raise TimeoutError("no go")
        await asyncio.sleep(0.01)
    step = len(own) // len(common) + 1
    for i, row in enumerate(own):
        writer.submit(row)
        if i % step == 0 and common:
            writer.submit(common.pop())
        if i % 50 == 0:
            await asyncio.sleep(0)  # let batches go out while others are writing
    for row in common:
        writer.submit(row)
    await writer.flush()
    await writer.aclose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])))
