"""Killswitch client for collectors: a per-program gate that obeys the control plane.

A thin layer over the Rust SDK (``killswitch-sdk``): every rule (default deny, pause wins,
fail closed after the grace period, signed resumes, the state file) is the SDK's, so
Python and Rust collectors behave identically.

    import killswitch

    def on_pause(event: killswitch.StateEvent) -> None:
        if event.purge:
            delete_unsent_buffer()
            event.confirm_purge()

    with killswitch.Client(
        endpoints=["https://control-1.internal:7070"],
        collector_id="host-42",
        programs=["keystrokes"],
        tls=("ca.pem", "collector.pem", "collector-key.pem"),
        state_file="/var/lib/collector/killswitch.state",
        on_pause=on_pause,
    ) as client:
        gate = client.gate("keystrokes")
        while running:
            if gate.active:
                capture_one_event()
"""

import asyncio as _asyncio
from typing import Optional as _Optional

from ._killswitch import (
    BuildError,
    Gate,
    KillswitchError,
    StateEvent,
    __version__,
)
from ._killswitch import Client as _RustClient

__all__ = [
    "BuildError",
    "Client",
    "Gate",
    "KillswitchError",
    "StateEvent",
    "__version__",
]

#: How often ``Client.wait_ready`` looks at the applied generations.
_READY_POLL_SECONDS = 0.01


class Client(_RustClient):
    """A connection to the Killswitch control plane; see ``__init__.pyi``."""

    async def wait_ready(self, timeout: _Optional[float] = None) -> None:
        """Waits, without blocking the event loop, until every registered program has an
        applied state; raises ``TimeoutError`` after ``timeout`` seconds."""
        loop = _asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while not self.is_ready():
            if deadline is not None and loop.time() >= deadline:
                raise TimeoutError(
                    "killswitch: no state applied for every program within %ss" % timeout
                )
            await _asyncio.sleep(_READY_POLL_SECONDS)
