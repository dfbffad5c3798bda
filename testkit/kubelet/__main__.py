"""`python -m testkit.kubelet CONFIG.json`: run a local kubelet until SIGTERM/SIGINT, then stop its pods'
processes and remove its Node."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from pathlib import Path

from testkit.kubelet.config import KubeletConfig
from testkit.kubelet.kubelet import main


async def _until_signalled(settings: KubeletConfig) -> None:
    task = asyncio.create_task(main(settings))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await task


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # every probe would be a line
    asyncio.run(_until_signalled(KubeletConfig.model_validate_json(Path(sys.argv[1]).read_text())))
