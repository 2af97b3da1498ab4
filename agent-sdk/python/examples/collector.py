"""A demo collector: "captures" synthetic events while the control plane lets it.

The Python twin of agent-sdk/examples/collector.rs:

    python3 collector.py --id c1 --program demo
    python3 collector.py --id c1 --state-file /tmp/c1.state
    python3 collector.py --id collector-1 --endpoint https://localhost:7070 \\
        --ca pki/ca.pem --cert pki/collector-1.pem --key pki/collector-1-key.pem

``--ca``, ``--cert`` and ``--key`` (all three, or none) switch to mutual TLS: the files are
those ``killswitch certs init pki`` writes, and the endpoints must be ``https://``.

It prints a line on every state change, with its cause, e.g.
``[c1] demo: PAUSED (lost contact) at generation 12``, and, every 2 s, how many events it
captured. With a state file, it first prints the generation the file starts each program
from, e.g. ``[c1] demo: starting from generation 12``. ``--fail-pause MESSAGE`` (or the
environment variable KILLSWITCH_DEMO_FAIL_PAUSE) makes its pause hook raise with that
message, which the operator sees as an errored acknowledgement. SIGTERM or Ctrl-C exits.
"""

import argparse
import os
import signal
import sys
import threading
from typing import Dict, List, Tuple

import killswitch


def parse_label(text: str) -> Tuple[str, str]:
    """Parses ``KEY=VALUE``."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError("expected KEY=VALUE, got %r" % text)
    return key, value


def parse_args(argv: List[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="A demo collector that obeys the Killswitch control plane.")
    parser.add_argument(
        "--endpoint",
        dest="endpoints",
        action="append",
        metavar="URL",
        help="address of a control replica; repeat for several "
        "(default: $KILLSWITCH_ENDPOINT or http://127.0.0.1:7070)",
    )
    parser.add_argument("--id", required=True, help="this collector's stable id")
    parser.add_argument(
        "--program",
        dest="programs",
        action="append",
        metavar="NAME",
        help="a program to collect for; repeat for several (default: demo)",
    )
    parser.add_argument(
        "--label", dest="labels", action="append", type=parse_label, default=[], metavar="KEY=VALUE"
    )
    parser.add_argument("--state-file", metavar="PATH", help="keep the last applied states in this file")
    parser.add_argument("--ca", default=os.environ.get("KILLSWITCH_CA"), metavar="PATH")
    parser.add_argument("--cert", default=os.environ.get("KILLSWITCH_CERT"), metavar="PATH")
    parser.add_argument("--key", default=os.environ.get("KILLSWITCH_KEY"), metavar="PATH")
    parser.add_argument(
        "--fail-pause",
        default=os.environ.get("KILLSWITCH_DEMO_FAIL_PAUSE"),
        metavar="MESSAGE",
        help="make the pause hook raise RuntimeError(MESSAGE) (for tests)",
    )
    parser.add_argument(
        "--report-interval", type=float, default=2.0, metavar="SECONDS", help="how often to print the counts"
    )
    args = parser.parse_args(argv)
    if not args.endpoints:
        args.endpoints = [os.environ.get("KILLSWITCH_ENDPOINT", "http://127.0.0.1:7070")]
    if not args.programs:
        args.programs = ["demo"]
    tls = [args.ca, args.cert, args.key]
    if any(tls) and not all(tls):
        parser.error("--ca, --cert and --key go together")
    return args


def describe(collector_id: str, state: str, event: killswitch.StateEvent) -> str:
    """A state change, e.g. ``[c1] demo: PAUSED (update) at generation 12 (reason: leak) by alice``."""
    line = "[%s] %s: %s (%s) at generation %d" % (collector_id, event.program, state, event.cause, event.generation)
    if event.reason:
        line += " (reason: %s)" % event.reason
    if event.actor:
        line += " by %s" % event.actor
    if event.incident_id:
        line += ", incident %s" % event.incident_id
    if event.purge:
        line += ", purge requested"
    return line


def main(argv: List[str]) -> int:
    args = parse_args(argv)
    stop = threading.Event()

    def on_pause(event: killswitch.StateEvent) -> None:
        print(describe(args.id, "PAUSED", event), flush=True)
        if args.fail_pause:
            raise RuntimeError(args.fail_pause)
        if event.purge:
            # This demo only counts events and buffers none, so nothing is left to delete.
            # A real collector deletes its unsent buffer first.
            event.confirm_purge()

    def on_resume(event: killswitch.StateEvent) -> None:
        print(describe(args.id, "RUNNING", event), flush=True)

    tls = None
    if args.ca:
        tls = (args.ca, args.cert, args.key)  # file paths: the binding reads them
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())

    try:
        client = killswitch.Client(
            endpoints=args.endpoints,
            collector_id=args.id,
            programs=args.programs,
            labels=dict(args.labels),
            tls=tls,
            state_file=args.state_file,
            on_pause=on_pause,
            on_resume=on_resume,
        )
    except killswitch.KillswitchError as error:
        print("cannot start the killswitch client: %s" % error, file=sys.stderr)
        return 1

    with client:
        gates = {program: client.gate(program) for program in args.programs}
        events: Dict[str, int] = {program: 0 for program in args.programs}
        for program in args.programs:
            generation = client.applied_generation(program)
            if generation is not None:
                print("[%s] %s: starting from generation %d" % (args.id, program, generation), flush=True)
        ticks_per_report = max(1, int(round(args.report_interval / 0.05)))
        tick = 0
        while not stop.wait(0.05):
            for program, gate in gates.items():
                if gate.active:
                    events[program] += 1
            tick += 1
            if tick % ticks_per_report == 0:
                for program, gate in gates.items():
                    state = "collecting" if gate.active else "paused"
                    print("[%s] %s: %s, %d events captured" % (args.id, program, state, events[program]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
