"""The Python API in-process: construction errors, the context manager, gates, hooks."""

import asyncio
import threading

import pytest

import killswitch
from conftest import wait_until


def offline_client(**overrides):
    """A client of a replica that is not there (a closed port): every gate stays closed."""
    args = dict(endpoints=["http://127.0.0.1:9"], collector_id="c1", programs=["demo"])
    args.update(overrides)
    return killswitch.Client(**args)


def tls_client(replica, pki, collector_id, programs, **hooks):
    return killswitch.Client(
        endpoints=[replica.endpoint],
        collector_id=collector_id,
        programs=programs,
        labels={"lang": "python"},
        # PEM bytes for the CA, paths for the certificate and key: both are accepted.
        tls=(open(pki.file("ca.pem"), "rb").read(), pki.file(collector_id + ".pem"), pki.file(collector_id + "-key.pem")),
        hook_timeout=5.0,
        **hooks,
    )


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"endpoints": []}, "no endpoint configured"),
        ({"programs": ["Not A Name"]}, 'invalid program name "Not A Name"'),
        ({"collector_id": ""}, "no collector id configured"),
        ({"hook_timeout": 0.0}, "invalid hook timeout"),
        ({"endpoints": ["https://127.0.0.1:7070"]}, "uses https but TLS is not configured"),
        ({"trusted_keys": ["zz"], "required_signatures": 1}, "invalid trusted key #0"),
        ({"max_statement_lifetime": 2 * 86400.0}, "invalid max statement lifetime"),
    ],
)
def test_invalid_configurations_raise_build_error_with_the_sdk_message(overrides, message):
    with pytest.raises(killswitch.BuildError, match=message) as raised:
        offline_client(**overrides)
    assert isinstance(raised.value, killswitch.KillswitchError)


def test_unreadable_tls_files_raise_build_error():
    with pytest.raises(killswitch.BuildError, match="cannot read the ca file /nonexistent/ca.pem"):
        offline_client(endpoints=["https://127.0.0.1:7070"], tls=("/nonexistent/ca.pem", "c.pem", "k.pem"))


def test_context_manager_gates_start_closed_and_stop_closes_everything():
    with offline_client(programs=["demo", "other"]) as client:
        assert isinstance(client, killswitch.Client)
        gate = client.gate("demo")
        assert isinstance(gate, killswitch.Gate)
        assert gate.active is False and gate.is_active() is False
        assert gate.program == "demo"
        assert client.programs == ["demo", "other"] and client.collector_id == "c1"
        assert client.applied_generation("demo") is None
        assert client.is_ready() is False
        assert client.wait_ready_blocking(0.05) is False
        with pytest.raises(KeyError, match="not registered"):
            client.gate("nope")
        assert not client.stopped
    assert client.stopped
    assert gate.active is False
    with pytest.raises(killswitch.KillswitchError, match="stopped"):
        client.gate("demo")
    client.stop()  # a second stop does nothing


def test_the_context_manager_stops_on_an_exception():
    with pytest.raises(ValueError):
        with offline_client() as client:
            raise ValueError("boom")
    assert client.stopped


def test_wait_ready_times_out_without_blocking_the_event_loop():
    async def main():
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        task = asyncio.ensure_future(ticker())
        with offline_client() as client:
            with pytest.raises(TimeoutError):
                await client.wait_ready(timeout=0.3)
        task.cancel()
        return ticks

    assert asyncio.run(main()) >= 5


def test_hooks_receive_events_and_an_exception_becomes_an_errored_ack(replica, pki):
    replica.create("py-api")
    events = []
    hook_threads = []

    def on_resume(event):
        hook_threads.append(threading.current_thread().name)
        events.append(("resume", event.program, event.generation, event.cause, event.reason, event.actor, event.purge))

    def on_pause(event):
        events.append(("pause", event.program, event.generation, event.cause, event.reason, event.actor, event.purge))
        event.confirm_purge()
        raise ValueError("cannot flush the buffer")

    with tls_client(replica, pki, "collector-3", ["py-api"], on_pause=on_pause, on_resume=on_resume) as client:
        asyncio.run(client.wait_ready(timeout=10))
        gate = client.gate("py-api")
        wait_until("the gate to open", lambda: gate.active)
        assert gate.is_active()
        assert events[0][:2] == ("resume", "py-api") and events[0][3] == "update", events
        assert events[0][2] == client.applied_generation("py-api")
        assert hook_threads[0] != threading.main_thread().name

        replica.cli("pause", "py-api", "--reason", "drill", "--purge")
        wait_until("the gate to close", lambda: not gate.active)

        def errored():
            errors = [e for e in replica.status("py-api").get("errors", []) if e["collector_id"] == "collector-3"]
            return errors or None

        errors = wait_until("the errored acknowledgement", errored)
        assert "cannot flush the buffer" in errors[0]["error"], errors
        pause = next(e for e in events if e[0] == "pause")
        assert pause[1:] == ("py-api", client.applied_generation("py-api"), "update", "drill", "alice", True), pause
    assert client.stopped and not gate.active
