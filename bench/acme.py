#!/usr/bin/env python3
"""ACME: time from `certgate ctl upsert` of an acme entry to the first handshake that serves
the obtained certificate, per challenge type, against a local Pebble; and what handshakes
for another name see meanwhile.

Run by bench/acme.sh (which builds certgate in release mode); not run in CI. Pebble runs
with PEBBLE_VA_NOSLEEP=1 (no random validation delay) and, so that runs compare, without
its random nonce rejection (PEBBLE_WFE_NONCEREJECT=0). Every order is for a new name (no
authorization reuse).

  obtain    `ctl upsert` of {acme: CA, domains: NAME} started -> the first handshake for NAME
            that verifies against Pebble's root (polled every 5 ms). Includes the ctl process
            (its start is measured alone as `ctl` and shown beside).
  probe     a client doing handshakes for a static name back to back, all the time: its
            handshake latency while no order runs (idle) and while one does (ordering). An
            event loop held up by an order would show as a tail (p99, max) grown in the
            second column. The probe, Pebble and certgate share the same 2 cores, so some
            of any growth is CPU contention, not a stall.

usage: bench/acme.py ROUNDS     (ROUNDS orders per challenge type)
"""
import datetime
import json
import os
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

from benchlib import CERTGATE, free_port, percentile


def listening(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def wait_until(condition, limit, what):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise RuntimeError(f"{what}: not within {limit} s")


def make_ca_and_leaf(folder, prefix, ca_name, leaf_dns, leaf_ip=None):
    """A P-256 CA and a leaf it signs, as PEM files PREFIX-ca.pem, PREFIX.pem, PREFIX.key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    import ipaddress
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ca_name)])
    ca = (x509.CertificateBuilder().subject_name(ca_subject).issuer_name(ca_subject)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=30))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                                       key_encipherment=False, data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.DNSName(leaf_dns)] + ([x509.IPAddress(ipaddress.ip_address(leaf_ip))] if leaf_ip else [])
    leaf = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, leaf_dns)]))
            .issuer_name(ca_subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    open(os.path.join(folder, f"{prefix}-ca.pem"), "wb").write(ca.public_bytes(pem))
    open(os.path.join(folder, f"{prefix}.pem"), "wb").write(leaf.public_bytes(pem))
    with open(os.open(os.path.join(folder, f"{prefix}.key"), os.O_WRONLY | os.O_CREAT, 0o600), "wb") as out:
        out.write(key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))


def handshake_seconds(port, name, context):
    """Seconds for one verified handshake for `name`, or None."""
    start = time.perf_counter()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as raw:
            with context.wrap_socket(raw, server_hostname=name):
                return time.perf_counter() - start
    except (OSError, ssl.SSLError):
        return None


class Prober:
    """A thread making verified handshakes for `name` back to back from its start until
    ``stop()``; `samples` holds (start on the monotonic clock, seconds) for each that succeeded."""

    def __init__(self, port, name, context):
        self.samples = []
        self._stop = threading.Event()

        def probe():
            while not self._stop.is_set():
                start = time.monotonic()
                seconds = handshake_seconds(port, name, context)
                if seconds is not None:
                    self.samples.append((start, seconds))
        self._thread = threading.Thread(target=probe, daemon=True)
        self._thread.start()

    def stop(self):
        self._stop.set()
        self._thread.join()


def stop_all(processes, work):
    """SIGTERM to each process (newest first; SIGKILL after 10 s), then the work folder
    removed unless KEEP=1."""
    for process in reversed(processes):
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
    if os.environ.get("KEEP") != "1":
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"kept {work}", file=sys.stderr)


class Pebble:
    """Pebble and pebble-challtestsrv started by ``start_pebble``."""

    def __init__(self, processes, directory, challenge_management):
        self.processes = processes
        self.directory = directory
        self.challenge_management = challenge_management


def start_pebble(work, tls_port, http_port):
    """Pebble validating tls-alpn-01 at `tls_port` and http-01 at `http_port` (certgate's
    listeners), every name resolving to 127.0.0.1 through challtestsrv's DNS; no random
    validation delay (PEBBLE_VA_NOSLEEP=1) and no random nonce rejection, so runs compare.
    Writes WORK/pebble-https-ca.pem (for `ca_roots`) and WORK/pebble-root.pem (its issuing root)."""
    listen, management, dns, challenge_management = free_port(), free_port(), free_port(), free_port()
    make_ca_and_leaf(work, "pebble-https", "Pebble HTTPS bench CA", "localhost", "127.0.0.1")
    json.dump({"pebble": {
        "listenAddress": f"127.0.0.1:{listen}", "managementListenAddress": f"127.0.0.1:{management}",
        "certificate": f"{work}/pebble-https.pem", "privateKey": f"{work}/pebble-https.key",
        "httpPort": http_port, "tlsPort": tls_port, "ocspResponderURL": ""}}, open(f"{work}/pebble.json", "w"))
    log = lambda name: open(f"{work}/{name}.log", "w")
    processes = [subprocess.Popen(
        ["pebble-challtestsrv", "-http01", "", "-https01", "", "-tlsalpn01", "", "-dns01", f"127.0.0.1:{dns}",
         "-management", f"127.0.0.1:{challenge_management}", "-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""],
        stdout=log("challtestsrv"), stderr=subprocess.STDOUT)]
    environment = dict(os.environ, PEBBLE_VA_NOSLEEP="1", PEBBLE_WFE_NONCEREJECT="0")
    processes.append(subprocess.Popen(["pebble", "-config", f"{work}/pebble.json", "-dnsserver", f"127.0.0.1:{dns}"],
                                      stdout=log("pebble"), stderr=subprocess.STDOUT, env=environment))
    wait_until(lambda: listening(listen) and listening(management) and listening(challenge_management), 10, "Pebble")
    https_context = ssl.create_default_context(cafile=f"{work}/pebble-https-ca.pem")
    root = urllib.request.urlopen(f"https://127.0.0.1:{management}/roots/0", context=https_context).read()
    open(f"{work}/pebble-root.pem", "wb").write(root)
    return Pebble(processes, f"https://127.0.0.1:{listen}/dir", challenge_management)


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    work = tempfile.mkdtemp(prefix="certgate-acme-bench-")
    processes = []
    try:
        https, http = free_port(), free_port()
        make_ca_and_leaf(work, "static", "Static bench CA", "static.bench.test")
        pebble = start_pebble(work, tls_port=https, http_port=http)
        processes += pebble.processes
        challenge_management = pebble.challenge_management
        log = lambda name: open(f"{work}/{name}.log", "w")

        hook = f"{work}/dns-hook.sh"
        open(hook, "w").write(f"""#!/bin/sh
case "$1" in
  present) exec curl -sS --fail -X POST -d "{{\\"host\\":\\"$2\\",\\"value\\":\\"$3\\"}}" http://127.0.0.1:{challenge_management}/set-txt ;;
  cleanup) exec curl -sS --fail -X POST -d "{{\\"host\\":\\"$2\\"}}" http://127.0.0.1:{challenge_management}/clear-txt ;;
esac
exit 2
""")
        os.chmod(hook, 0o755)
        directory = pebble.directory
        common = f'directory: "{directory}", ca_roots: {work}/pebble-https-ca.pem'
        open(f"{work}/certgate.yaml", "w").write(f"""log_level: warning
state_dir: {work}/state
listeners:
  - {{ name: https, listen: 127.0.0.1:{https} }}
  - {{ name: http, listen: 127.0.0.1:{http}, protocol: http }}
routes:
  - {{ server_names: ["*"], respond: {{ body: ok }} }}
acme:
  alpn: {{ {common}, challenges: [tls-alpn-01] }}
  http: {{ {common}, challenges: [http-01] }}
  dns: {{ {common}, challenges: [dns-01], dns_hook: ["{hook}"] }}
certificates:
  static: {{ tls_cert: {work}/static.pem, tls_key: {work}/static.key, domains: static.bench.test }}
control:
  socket: {work}/control.sock
""")
        gateway = subprocess.Popen([CERTGATE, "run", "--config", f"{work}/certgate.yaml"], stdout=log("certgate"), stderr=subprocess.STDOUT)
        processes.append(gateway)
        wait_until(lambda: os.path.exists(f"{work}/control.sock") and listening(https), 30, "certgate")
        ctl = [CERTGATE, "ctl", "--socket", f"{work}/control.sock"]

        # The probe: back-to-back handshakes for the static name, each stamped.
        static_context = ssl.create_default_context(cafile=f"{work}/static-ca.pem")
        prober = Prober(https, "static.bench.test", static_context)
        samples = prober.samples
        time.sleep(3)  # idle samples first

        acme_context = ssl.create_default_context(cafile=f"{work}/pebble-root.pem")
        ctl_alone = []
        for _ in range(5):
            start = time.monotonic()
            subprocess.run(ctl + ["status"], capture_output=True, check=True)
            ctl_alone.append(time.monotonic() - start)
        results = {}
        ordering = []  # (start, end)
        for kind in ["alpn", "http", "dns"]:
            times = []
            for index in range(rounds):
                name = f"{kind}-{index}-{int(time.time())}.bench.test"
                entry = f"{work}/{kind}-{index}.yaml"
                open(entry, "w").write(f"certificates:\n  {kind}-{index}: {{ acme: {kind}, domains: {name} }}\n")
                start = time.monotonic()
                subprocess.run(ctl + ["upsert", entry], capture_output=True, check=True)
                while handshake_seconds(https, name, acme_context) is None:
                    if time.monotonic() - start > 120:
                        raise RuntimeError(f"{name} was not served within 120 s; see {work}/certgate.log")
                    time.sleep(0.005)
                end = time.monotonic()
                times.append(end - start)
                ordering.append((start, end))
                time.sleep(1)  # idle between orders
            results[kind] = times
        time.sleep(2)
        prober.stop()

        during = [s for t, s in samples if any(a <= t <= b for a, b in ordering)]
        idle = [s for t, s in samples if not any(a - 0.2 <= t <= b + 0.2 for a, b in ordering)]
        ms = lambda seconds: f"{seconds * 1000:.0f} ms"
        print(f"ACME obtain, {rounds} orders per challenge type (median, min–max); `ctl` process alone: {ms(statistics.median(ctl_alone))}\n")
        print("| challenge | upsert → first verified handshake |")
        print("|---|---|")
        labels = {"alpn": "tls-alpn-01", "http": "http-01", "dns": "dns-01 (hook)"}
        for kind, times in results.items():
            print(f"| {labels[kind]} | {ms(statistics.median(times))} ({ms(min(times))}–{ms(max(times))}) |")
        print(f"\nHandshakes for another name (static.bench.test), {len(idle)} while idle, {len(during)} during orders:\n")
        print("| handshake latency | idle | during orders |")
        print("|---|---|---|")
        for label, q in [("median", 0.5), ("p99", 0.99)]:
            print(f"| {label} | {percentile(idle, q) * 1000:.1f} ms | {percentile(during, q) * 1000:.1f} ms |")
        print(f"| max | {max(idle) * 1000:.1f} ms | {max(during) * 1000:.1f} ms |")
    finally:
        stop_all(processes, work)


if __name__ == "__main__":
    main()
