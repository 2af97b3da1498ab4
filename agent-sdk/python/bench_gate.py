"""Micro-benchmark of ``Gate.active`` and ``Gate.is_active()`` from Python.

    python3 agent-sdk/python/bench_gate.py

Prints the cost of one check in nanoseconds (best of 5 runs of 1,000,000 calls), next to
an empty attribute access and method call for scale. The gate belongs to a client whose
replica is not there, so it stays closed; the cost does not depend on its state: one
atomic load in Rust, the rest is CPython's call overhead.
"""

import timeit

import killswitch

NUMBER = 1_000_000
REPEAT = 5


class _Plain:
    active = False

    def is_active(self) -> bool:
        return False


def per_call_ns(statement: str, namespace: dict) -> float:
    best = min(timeit.repeat(statement, globals=namespace, number=NUMBER, repeat=REPEAT))
    return best / NUMBER * 1e9


def main() -> None:
    with killswitch.Client(endpoints=["http://127.0.0.1:9"], collector_id="bench", programs=["demo"]) as client:
        namespace = {"gate": client.gate("demo"), "plain": _Plain()}
        for label, statement in [
            ("gate.active", "gate.active"),
            ("gate.is_active()", "gate.is_active()"),
            ("plain Python attribute (for scale)", "plain.active"),
            ("plain Python method (for scale)", "plain.is_active()"),
        ]:
            print("%-36s %6.1f ns per call" % (label, per_call_ns(statement, namespace)))


if __name__ == "__main__":
    main()
