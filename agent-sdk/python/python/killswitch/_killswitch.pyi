"""Type stubs of the Rust extension ``killswitch._killswitch`` (PyO3, abi3)."""

import os
from types import TracebackType
from typing import Callable, Dict, List, Literal, Optional, Sequence, Tuple, Type, Union

__version__: str

#: PEM given as bytes, as PEM text (starting with ``-----BEGIN``), or a file path.
_Pem = Union[bytes, str, "os.PathLike[str]"]
#: An ed25519 public key: 32 raw bytes, or 64 hex digits (what ``killswitch keys new`` prints).
_Key = Union[bytes, str]
_Hook = Callable[["StateEvent"], object]

class KillswitchError(Exception):
    """The base class of the errors this package raises."""

class BuildError(KillswitchError):
    """The client configuration cannot work; the message (the SDK's) says what to change."""

class StateEvent:
    """A state change for one program, as given to a hook."""

    @property
    def program(self) -> str: ...
    @property
    def generation(self) -> int: ...
    @property
    def cause(self) -> Literal["update", "lost contact", "contact restored", "state file"]:
        """Why the hook runs."""
    @property
    def reason(self) -> str:
        """Why the operator made the change (empty for lost contact and state file)."""
    @property
    def incident_id(self) -> str: ...
    @property
    def actor(self) -> str: ...
    @property
    def purge(self) -> bool:
        """For a pause: delete unsent buffered data, then call ``confirm_purge()``."""
    def confirm_purge(self) -> None:
        """Confirms the purge; counts only if the hook then returns without raising in time."""

class Gate:
    """Whether a collector may capture data for one program right now."""

    @property
    def active(self) -> bool:
        """One atomic load: check it before capturing each event."""
    def is_active(self) -> bool:
        """Same as ``active``."""
    @property
    def program(self) -> str: ...

class Client:
    """A running connection to the Killswitch control plane (the Rust SDK's ``Client``).

    Starts at once (every gate closed until the control plane says RUNNING); raises
    ``BuildError`` for a configuration that cannot work. Hooks run on the client's own
    threads, take the GIL only to call the callable, and an exception they raise is
    reported to the operator as an errored acknowledgement with its message.
    """

    def __new__(
        cls,
        *,
        endpoints: Sequence[str],
        collector_id: str,
        programs: Sequence[str],
        labels: Optional[Dict[str, str]] = None,
        tls: Optional[Tuple[_Pem, _Pem, _Pem]] = None,
        state_file: Optional[Union[str, "os.PathLike[str]"]] = None,
        trusted_keys: Optional[Sequence[_Key]] = None,
        required_signatures: int = 0,
        max_statement_lifetime: float = 3600.0,
        on_pause: Optional[_Hook] = None,
        on_resume: Optional[_Hook] = None,
        hook_timeout: float = 10.0,
    ) -> "Client": ...
    def gate(self, program: str) -> Gate:
        """The gate of ``program``; ``KeyError`` if it was not registered."""
    def applied_generation(self, program: str) -> Optional[int]:
        """The generation last applied for ``program``, or ``None``."""
    def is_ready(self) -> bool:
        """Whether every registered program has an applied state (from the control plane,
        or from the state file)."""
    def wait_ready_blocking(self, timeout: Optional[float] = None) -> bool:
        """Blocks, without the GIL, until ``is_ready()``; ``False`` after ``timeout`` s."""
    def stop(self) -> None:
        """Stops the session and closes every gate; a second call does nothing."""
    @property
    def stopped(self) -> bool: ...
    @property
    def programs(self) -> List[str]: ...
    @property
    def collector_id(self) -> str: ...
    def __enter__(self) -> "Client": ...
    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc_value: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> bool: ...
