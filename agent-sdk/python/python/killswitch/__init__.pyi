"""Type stubs of the ``killswitch`` package."""

from typing import Optional

from ._killswitch import BuildError as BuildError
from ._killswitch import Gate as Gate
from ._killswitch import KillswitchError as KillswitchError
from ._killswitch import StateEvent as StateEvent
from ._killswitch import __version__ as __version__
from ._killswitch import Client as _RustClient

__all__ = ["BuildError", "Client", "Gate", "KillswitchError", "StateEvent", "__version__"]

class Client(_RustClient):
    async def wait_ready(self, timeout: Optional[float] = None) -> None:
        """Waits, without blocking the event loop, until every registered program has an
        applied state (the first Snapshot, or with a state file the file's); raises
        ``TimeoutError`` after ``timeout`` seconds."""
    def __enter__(self) -> "Client": ...
