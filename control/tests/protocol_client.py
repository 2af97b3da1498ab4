#!/usr/bin/env python3
"""A second collector client, not written in Rust: drives a real replica through the
collector Session protocol exactly as docs/protocol.md describes it.

The stubs are generated at run time from proto/ with grpcio-tools, so the script speaks
what the .proto files say, not what the Rust code assumes. Against a plain-text replica
(--insecure-dev) it:

 1. opens CollectorService.Session and sends Hello first (retrying with backoff while the
    replica answers UNAVAILABLE: its etcd watch is not healthy yet);
 2. receives the Snapshot: the state of the program, and the program that does not
    exist listed in unknown_programs;
 3. acknowledges the Snapshot and waits until AdminService.Status counts it;
 4. pauses the program (with purge) through AdminService.Pause and receives the Update;
 5. sends a forged Ack for a generation the replica never sent, then the true Ack of the
    Update (purged), and checks through Status that the true one counts and the forged
    one does not (an accepted Ack of a higher generation would have made the replica
    ignore the true one: its book keeps the newest generation acknowledged);
 6. receives a Heartbeat and checks its revision and valid_for_ms;
 7. prints "ready for drain", and expects a Drain when the replica shuts down gracefully.

Prints one JSON document per step on stdout, then "ready for drain", then the Drain step
and "ok". Exit 0: the whole sequence held. Exit 1: it did not (the reason on stderr).
Exit 2: python's grpcio or grpcio-tools is missing (run ops/scripts/setup.sh). Used by
control/tests/protocol.rs.
"""

import argparse
import json
import os
import queue
import sys
import tempfile
import time

try:
    import grpc
    from grpc_tools import protoc
except ImportError as error:
    print(
        f"protocol_client.py: {error}: run ops/scripts/setup.sh to install grpcio and grpcio-tools",
        file=sys.stderr,
    )
    sys.exit(2)

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_PROTO_DIR = os.path.normpath(os.path.join(HERE, "..", "..", "proto"))
UNKNOWN_PROGRAM = "no-such-program"


class ProtocolError(Exception):
    """The replica did not behave as docs/protocol.md says."""


def expect(condition, message):
    if not condition:
        raise ProtocolError(message)


def generate_stubs(proto_dir, out_dir):
    """Generates the Python modules of every killswitch/v1/*.proto into out_dir."""
    # The well-known types (google/protobuf/timestamp.proto) ship with grpcio-tools.
    well_known = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    sources = sorted(
        os.path.join("killswitch", "v1", name)
        for name in os.listdir(os.path.join(proto_dir, "killswitch", "v1"))
        if name.endswith(".proto")
    )
    code = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{proto_dir}",
            f"-I{well_known}",
            f"--python_out={out_dir}",
            f"--grpc_python_out={out_dir}",
            *sources,
        ]
    )
    expect(code == 0, f"protoc failed on {proto_dir} (exit {code})")
    # Regular packages, first on the path: an installed `killswitch` package (the Python
    # SDK) must not shadow the generated modules.
    for package in ("killswitch", os.path.join("killswitch", "v1")):
        open(os.path.join(out_dir, package, "__init__.py"), "a").close()
    sys.path.insert(0, out_dir)


def step(name, **fields):
    print(json.dumps({"step": name, **fields}), flush=True)


class Session:
    """One CollectorService.Session: a queue of outgoing CollectorMessages and the
    iterator of incoming ControlMessages."""

    def __init__(self, stub, pb, deadline):
        self.pb = pb
        self.outgoing = queue.Queue()
        self.responses = stub.Session(self._requests(), timeout=max(deadline - time.time(), 0.1))

    def _requests(self):
        while True:
            message = self.outgoing.get()
            if message is None:
                return
            yield message

    def send(self, **message):
        self.outgoing.put(self.pb.CollectorMessage(**message))

    def close(self):
        """Half-closes the request stream: the collector leaves."""
        self.outgoing.put(None)

    def next(self):
        """The next ControlMessage; raises grpc.RpcError if the replica closed the stream
        with a status, ProtocolError if it ended it without one."""
        try:
            return next(self.responses)
        except StopIteration:
            raise ProtocolError("the replica ended the session without a message") from None

    def next_heartbeat(self):
        """The next Heartbeat; anything else first is a failure."""
        message = self.next()
        kind = message.WhichOneof("msg")
        expect(kind == "heartbeat", f"expected a Heartbeat, got {kind}")
        return message.heartbeat

    def next_state_or_drain(self):
        """The next Snapshot, Update or Drain; Heartbeats on the way are skipped."""
        while True:
            message = self.next()
            kind = message.WhichOneof("msg")
            if kind != "heartbeat":
                return kind, message


def open_session(stub, pb, hello, deadline):
    """Opens a session and reads its first message, retrying with exponential backoff
    and full jitter while the replica refuses with UNAVAILABLE (it cannot vouch for
    program state yet). Any other refusal is a failure here."""
    import random

    attempt = 0
    while True:
        session = Session(stub, pb, deadline)
        session.send(hello=hello)
        try:
            kind, first = session.next_state_or_drain()
            return session, kind, first
        except grpc.RpcError as error:
            session.close()
            if error.code() != grpc.StatusCode.UNAVAILABLE or time.time() > deadline:
                raise
            delay = random.uniform(0, min(2.0, 0.05 * 2**attempt))
            attempt += 1
            time.sleep(delay)


def status_until(admin, apb, program, metadata, deadline, what, condition):
    """Polls AdminService.Status every 20 ms until `condition(status)` holds."""
    last = None
    while time.time() < deadline:
        last = admin.Status(apb.StatusRequest(program=program), metadata=metadata, timeout=3)
        if condition(last):
            return last
        time.sleep(0.02)
    raise ProtocolError(f"timed out waiting for {what}; last status: {last}")


def counts(status):
    c = status.collectors
    return {
        "connected": c.connected,
        "acked": c.acked,
        "pending": c.pending_count,
        "errored": c.errored_count,
        "diverged": c.diverged_count,
        "purged": c.purged,
    }


def run(args):
    out_dir = tempfile.mkdtemp(prefix="killswitch-stubs-")
    generate_stubs(args.proto_dir, out_dir)
    from killswitch.v1 import admin_pb2 as apb
    from killswitch.v1 import admin_pb2_grpc
    from killswitch.v1 import collector_pb2 as pb
    from killswitch.v1 import collector_pb2_grpc
    from killswitch.v1 import types_pb2 as tpb
    from google.protobuf.timestamp_pb2 import Timestamp

    running, paused = tpb.RUN_STATE_RUNNING, tpb.RUN_STATE_PAUSED
    deadline = time.time() + args.timeout
    # Under --insecure-dev every admin caller is an admin named by this metadata.
    metadata = (("killswitch-actor", "protocol-client"),)

    def ack(session, generation, effective, **extra):
        now = time.time()
        applied_at = Timestamp(seconds=int(now), nanos=int((now % 1) * 1e9))
        session.send(
            ack=pb.Ack(
                program=args.program,
                generation=generation,
                effective=effective,
                applied_at=applied_at,
                **extra,
            )
        )

    with grpc.insecure_channel(args.target) as channel:
        collectors = collector_pb2_grpc.CollectorServiceStub(channel)
        admin = admin_pb2_grpc.AdminServiceStub(channel)

        # 1, 2: Hello first, then the Snapshot.
        hello = pb.Hello(
            collector_id=args.collector_id,
            programs=[args.program, UNKNOWN_PROGRAM],
            labels={"lang": "python"},
            sdk_version="protocol_client.py",
        )
        session, kind, first = open_session(collectors, pb, hello, deadline)
        expect(kind == "snapshot", f"the first message is {kind}, not a Snapshot")
        snapshot = first.snapshot
        expect(len(snapshot.states) == 1, f"expected one state: {snapshot}")
        state = snapshot.states[0]
        expect(state.program == args.program, f"state of {state.program}")
        expect(len(state.rules) == 0, "a collector never receives rules")
        g1 = state.generation
        step(
            "snapshot",
            generation=g1,
            state=tpb.RunState.Name(state.state),
            on_lost_contact=tpb.LostContact.Name(state.policy.on_lost_contact),
            grace_ms=state.policy.grace_ms,
            unknown_programs=list(snapshot.unknown_programs),
        )

        # 3: acknowledge it with the gate where the state puts it.
        gate = running if state.state == running else paused
        ack(session, g1, gate)
        status = status_until(
            admin, apb, args.program, metadata, deadline, "the Snapshot's Ack to count",
            lambda s: s.state.generation == g1 and not s.replicas_behind and s.collectors.acked == 1,
        )
        step("snapshot acked", generation=g1, counts=counts(status))

        # 4: a pause (with purge) made through the admin API arrives as an Update.
        change = admin.Pause(
            apb.PauseRequest(program=args.program, reason="protocol test", purge=True),
            metadata=metadata,
            timeout=5,
        )
        expect(change.changed, f"the pause changed nothing: {change}")
        g2 = change.state.generation
        kind, message = session.next_state_or_drain()
        expect(kind == "update", f"expected an Update, got {kind}")
        update = message.update.state
        expect(update.generation == g2, f"Update at {update.generation}, the pause is {g2}")
        expect(update.state == paused, f"Update says {tpb.RunState.Name(update.state)}")
        expect(update.generation > g1, "generations only grow")
        step(
            "update",
            generation=g2,
            state=tpb.RunState.Name(update.state),
            purge=update.purge,
            reason=update.reason,
            actor=update.actor,
        )

        # 5: a forged Ack of a generation never sent (ahead of everything sent), then the
        # true one. The replica handles a session's messages in order, and keeps only the
        # newest generation each collector acknowledged: had it accepted the forged Ack,
        # it would have ignored the true one, and Status would never count it.
        forged = g2 + 1000
        ack(session, forged, running, error="forged")
        ack(session, g2, paused, purged=True)
        status = status_until(
            admin, apb, args.program, metadata, deadline, "the Update's Ack to count",
            lambda s: s.state.generation == g2 and not s.replicas_behind and s.collectors.acked == 1,
        )
        c = counts(status)
        expect(c["errored"] == 0 and c["pending"] == 0, f"the forged Ack counted: {c}")
        step("update acked", generation=g2, forged_generation=forged, counts=c)

        # 6: a Heartbeat, received after the Update was acknowledged.
        beat = session.next_heartbeat()
        expect(beat.revision >= g2, f"heartbeat revision {beat.revision} behind {g2}")
        expect(beat.valid_for_ms > 0, "a heartbeat vouches for some time")
        step("heartbeat", revision=beat.revision, valid_for_ms=beat.valid_for_ms)

        # 7: the replica shuts down gracefully: Drain, then the collector leaves.
        print("ready for drain", flush=True)
        kind, message = session.next_state_or_drain()
        expect(kind == "drain", f"expected a Drain, got {kind}")
        step("drain", reconnect_after_ms=message.drain.reconnect_after_ms)
        session.close()
        # The replica ends the stream after Drain; whatever status it ends with, the
        # collector is done with this replica.
        try:
            for extra in session.responses:
                raise ProtocolError(f"a message after Drain: {extra}")
            end = "OK"
        except grpc.RpcError as error:
            end = error.code().name
        step("closed", status=end)
    print("ok", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", help="HOST:PORT of a plain-text (--insecure-dev) replica")
    parser.add_argument("--program", default="demo", help="an existing program")
    parser.add_argument("--collector-id", default="py-collector-1")
    parser.add_argument("--proto-dir", default=DEFAULT_PROTO_DIR, help="the repository's proto/")
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds for everything")
    args = parser.parse_args()
    try:
        run(args)
    except ProtocolError as error:
        print(f"protocol_client.py: {error}", file=sys.stderr)
        sys.exit(1)
    except grpc.RpcError as error:
        print(f"protocol_client.py: {error.code().name}: {error.details()}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
