#!/usr/bin/env python3
"""A small certgate admin script: list, inspect and change the served certificates over
the control socket (gRPC on a Unix domain socket).

It needs only `pip install grpcio grpcio-tools`: the .proto is compiled when the script
starts, so it always speaks the contract of the checkout it lives in.

    examples/admin.py --socket state/control.sock status
    examples/admin.py --socket state/control.sock list
    examples/admin.py --socket state/control.sock upsert shop --cert shop.pem --key shop.key \
        [--domains shop.example,www.shop.example] [--default] [--expect-generation N] [--dry-run]
    examples/admin.py --socket state/control.sock delete shop [other ...]

Exit status: 0 on success; 1 when the server refused (its status and reasons are printed);
2 on a usage error.
"""

import argparse
import importlib
import os
import sys
import tempfile

import grpc
from grpc_tools import protoc

try:
    from importlib.resources import files as _resource_files
except ImportError:  # Python < 3.9
    _resource_files = None

HERE = os.path.dirname(os.path.abspath(__file__))
PROTOS = os.path.join(HERE, "..", "Protos")
PROTO = "certgate/control/v1/control.proto"


def load_protocol():
    """Compiles control.proto into a temporary folder and imports the generated modules."""
    out = tempfile.mkdtemp(prefix="certgate-admin-")
    well_known = str(_resource_files("grpc_tools") / "_proto") if _resource_files else \
        os.path.join(os.path.dirname(protoc.__file__), "_proto")
    status = protoc.main([
        "grpc_tools.protoc", f"-I{PROTOS}", f"-I{well_known}",
        f"--python_out={out}", f"--grpc_python_out={out}", os.path.join(PROTOS, PROTO),
    ])
    if status != 0:
        sys.exit(f"cannot compile {PROTO} (protoc exit {status})")
    sys.path.insert(0, out)
    messages = importlib.import_module("certgate.control.v1.control_pb2")
    services = importlib.import_module("certgate.control.v1.control_pb2_grpc")
    return messages, services


def read(path):
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def print_result(result):
    print(f"generation {result.generation}{' (dry run)' if result.dry_run else ''}")
    for label, names in (("added", result.added), ("changed", result.changed), ("removed", result.removed)):
        if names:
            print(f"  {label}: {', '.join(names)}")
    for error in result.errors:
        print(f"  kept previous {error.entry}: {error.field}: {error.reason}")


def main():
    parser = argparse.ArgumentParser(description="certgate control-socket admin")
    parser.add_argument("--socket", default="state/control.sock", help="the control socket (control.socket)")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("status", help="generation, counts, listeners, last update")
    commands.add_parser("list", help="the served certificates")
    upsert = commands.add_parser("upsert", help="add or replace one certificate")
    upsert.add_argument("name")
    upsert.add_argument("--cert", required=True, help="PEM file: the leaf, then its chain")
    upsert.add_argument("--key", required=True, help="PEM file: the private key")
    upsert.add_argument("--domains", default="", help="comma-separated names (default: the leaf's SANs)")
    upsert.add_argument("--default", action="store_true", help="serve it when nothing else matches")
    upsert.add_argument("--expect-generation", type=int, help="apply only at this generation")
    upsert.add_argument("--dry-run", action="store_true", help="validate and report, change nothing")
    delete = commands.add_parser("delete", help="remove certificates by name")
    delete.add_argument("names", nargs="+")
    delete.add_argument("--expect-generation", type=int)
    args = parser.parse_args()

    messages, services = load_protocol()
    with grpc.insecure_channel(f"unix:{os.path.abspath(args.socket)}") as channel:
        control = services.CertificateControlStub(channel)
        try:
            if args.command == "status":
                status = control.GetStatus(messages.GetStatusRequest(), timeout=10)
                print(f"generation {status.generation}, {status.certificates} certificates, "
                      f"{status.issued_cached} issued leaves cached, last update by {status.last_update_source} "
                      f"at {status.last_update.ToDatetime().isoformat()}Z")
                for listener in status.listeners:
                    print(f"  listener {listener.name} on {listener.address}")
            elif args.command == "list":
                response = control.ListCertificates(messages.ListCertificatesRequest(), timeout=10)
                print(f"generation {response.generation}")
                for entry in response.certificates:
                    default = " (default)" if entry.is_default else ""
                    print(f"{entry.name}{default}\t{entry.kind}\t{entry.state}\t{entry.days_left} days\t"
                          f"{','.join(entry.domains)}\t{entry.sha256_fingerprint}")
            elif args.command == "upsert":
                entry = messages.CertificateEntry(
                    name=args.name, tls_cert=read(args.cert), tls_key=read(args.key),
                    domains=[d.strip() for d in args.domains.split(",") if d.strip()],
                    is_default=args.default)
                request = messages.UpdateCertificatesRequest(upsert=[entry], dry_run=args.dry_run)
                if args.expect_generation is not None:
                    request.expected_generation = args.expect_generation
                print_result(control.UpdateCertificates(request, timeout=60))
            elif args.command == "delete":
                # `delete` is a Python keyword: pass the field by name.
                request = messages.UpdateCertificatesRequest(**{"delete": args.names})
                if args.expect_generation is not None:
                    request.expected_generation = args.expect_generation
                print_result(control.UpdateCertificates(request, timeout=60))
        except grpc.RpcError as error:
            print(f"certgate refused: {error.code().name}: {error.details()}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
