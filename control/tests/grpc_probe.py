#!/usr/bin/env python3
"""Probes a Killswitch control replica with Python grpcio, a gRPC client that is not ours.

Calls grpc.health.v1.Health/Check for each --service (default: the overall service "")
and lists the services that gRPC server reflection (v1alpha, what grpcio-reflection and
older grpcurl speak) advertises. Prints one JSON document on stdout:

    {"health": {"": "SERVING", ...}, "services": ["grpc.health.v1.Health", ...]}

A Check that fails is reported as "ERROR: <code>: <details>" instead of a status; the
script exits 0 whenever it could print its document. Exit 2: the grpc modules are
missing (run ops/scripts/setup.sh). Used by control/tests/operability.rs.
"""

import argparse
import json
import sys

try:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
except ImportError as error:
    print(
        f"grpc_probe.py: {error}: run ops/scripts/setup.sh to install grpcio, "
        "grpcio-health-checking and grpcio-reflection",
        file=sys.stderr,
    )
    sys.exit(2)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", help="HOST:PORT of the replica")
    parser.add_argument("--ca", help="PEM CA file: connect with TLS, no client certificate")
    parser.add_argument("--service", action="append", help="service to check (repeatable)")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds per call")
    args = parser.parse_args()

    if args.ca:
        with open(args.ca, "rb") as ca:
            credentials = grpc.ssl_channel_credentials(root_certificates=ca.read())
        channel = grpc.secure_channel(args.target, credentials)
    else:
        channel = grpc.insecure_channel(args.target)

    result = {"health": {}, "services": None}
    with channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in args.service or [""]:
            try:
                response = health.Check(
                    health_pb2.HealthCheckRequest(service=service), timeout=args.timeout
                )
                status = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
            except grpc.RpcError as error:
                status = f"ERROR: {error.code().name}: {error.details()}"
            result["health"][service] = status

        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        try:
            responses = reflection.ServerReflectionInfo(iter([request]), timeout=args.timeout)
            services = []
            for response in responses:
                if response.HasField("error_response"):
                    services = f"ERROR: {response.error_response.error_message}"
                    break
                services.extend(s.name for s in response.list_services_response.service)
            result["services"] = services if isinstance(services, str) else sorted(services)
        except grpc.RpcError as error:
            result["services"] = f"ERROR: {error.code().name}: {error.details()}"

    json.dump(result, sys.stdout)
    print()


if __name__ == "__main__":
    main()
