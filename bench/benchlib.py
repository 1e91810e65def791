"""What the benchmark scripts share: where the release binary is, a free port, percentiles."""
import os
import socket

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CERTGATE = os.path.join(ROOT, ".build/release/certgate")


def free_port():
    """A TCP port on 127.0.0.1 free right now (the benchmarks run alone on the machine)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values, q):
    """The value at quantile q (0..1) of `values`, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
