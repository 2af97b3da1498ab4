"""examples/collector.py against a real control replica over mutual TLS."""

from conftest import wait_until


def connected(replica, program, acked=None):
    """A waiter for ``status`` showing one connected collector (and ``acked`` acks)."""

    def check():
        status = replica.status(program)
        collectors = status["collectors"]
        if collectors["connected"] != 1:
            return None
        if acked is not None and collectors["acked"] != acked:
            return None
        return status

    return check


def test_collector_connects_pauses_and_acknowledges(replica, pki, collectors):
    replica.create("py-pause")
    collector = collectors(
        ["--id", "collector-1", "--program", "py-pause", "--endpoint", replica.endpoint] + pki.collector_tls("collector-1")
    )
    collector.wait_line("the program to run", lambda l: "py-pause: RUNNING (update)" in l)
    wait_until("the collector to count as connected", connected(replica, "py-pause"))
    collector.wait_line("capture to go on", lambda l: "py-pause: collecting" in l)

    mark = len(collector.output())
    pause = replica.cli("pause", "py-pause", "--reason", "leak", "--wait", "10s")
    assert pause.returncode == 0, pause.stderr
    line = collector.wait_line("the pause", lambda l: "py-pause: PAUSED (update)" in l, start=mark)
    assert "(reason: leak)" in line and "by alice" in line, line
    status = wait_until("the acknowledgement", connected(replica, "py-pause", acked=1))
    assert status["collectors"]["errored"] == [], status
    collector.wait_line("capture to stop", lambda l: "py-pause: paused" in l, start=mark)
    assert collector.stop() == 0, collector.stderr


def test_a_failing_pause_hook_is_reported_with_its_message(replica, pki, collectors):
    replica.create("py-fail")
    collector = collectors(
        ["--id", "collector-2", "--program", "py-fail", "--endpoint", replica.endpoint] + pki.collector_tls("collector-2"),
        env={"KILLSWITCH_DEMO_FAIL_PAUSE": "disk on fire"},
    )
    collector.wait_line("the program to run", lambda l: "py-fail: RUNNING (update)" in l)
    wait_until("the collector to count as connected", connected(replica, "py-fail"))

    replica.cli("pause", "py-fail", "--reason", "leak")

    def errored():
        status = replica.status("py-fail")
        errors = [e for e in status.get("errors", []) if e.get("collector_id") == "collector-2"]
        return errors if errors and "disk on fire" in errors[0].get("error", "") else None

    errors = wait_until("the errored acknowledgement", errored)
    assert "disk on fire" in errors[0]["error"], errors
    # Pause wins: the gate closed before the hook ran, whatever the hook did.
    collector.wait_line("capture to stop", lambda l: "py-fail: paused" in l)
    assert collector.stop() == 0, collector.stderr


def test_it_fails_closed_after_the_grace_when_the_replica_dies(replica, pki, collectors):
    replica.create("py-grace", "--grace", "2s")
    collector = collectors(
        ["--id", "collector-3", "--program", "py-grace", "--endpoint", replica.endpoint] + pki.collector_tls("collector-3")
    )
    collector.wait_line("the program to run", lambda l: "py-grace: RUNNING (update)" in l)
    mark = len(collector.output())
    replica.kill()
    collector.wait_line("the lost-contact pause", lambda l: "py-grace: PAUSED (lost contact)" in l, start=mark)
    collector.wait_line("capture to stop", lambda l: "py-grace: paused" in l, start=mark)
    assert collector.stop() == 0, collector.stderr


def test_it_stays_paused_on_restart_from_its_state_file(replica, pki, collectors, tmp_path):
    replica.create("py-restart")
    state_file = str(tmp_path / "collector.state")
    args = ["--id", "collector-1", "--program", "py-restart", "--endpoint", replica.endpoint, "--state-file", state_file]
    args += pki.collector_tls("collector-1")
    first = collectors(args)
    first.wait_line("the program to run", lambda l: "py-restart: RUNNING (update)" in l)
    wait_until("the collector to count as connected", connected(replica, "py-restart"))
    pause = replica.cli("pause", "py-restart", "--reason", "leak", "--wait", "10s")
    assert pause.returncode == 0, pause.stderr
    paused = first.wait_line("the pause", lambda l: "py-restart: PAUSED (update)" in l)
    generation = int(paused.split("at generation ")[1].split()[0])
    wait_until("the acknowledgement", connected(replica, "py-restart", acked=1))
    assert first.stop() == 0, first.stderr
    with open(state_file) as f:
        assert "py-restart %d PAUSED" % generation in f.read()

    second = collectors(args)
    second.wait_line(
        "the state file's generation", lambda l: "py-restart: starting from generation %d" % generation in l
    )
    wait_until("the restarted collector's acknowledgement", connected(replica, "py-restart", acked=1))
    second.wait_line("a report of the restarted collector", lambda l: "py-restart: paused" in l)
    assert not any("RUNNING" in l or "collecting" in l for l in second.output()), second.dump()
    assert second.stop() == 0, second.stderr
