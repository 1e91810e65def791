#!/usr/bin/env python3
"""Startup, reload and memory of certgate vs nginx vs HAProxy on the same N certificates.

Run by bench/startup.sh (which builds certgate, installs the peers and makes the
certificates); not run in CI. For each N and each server, one at a time, RUNS times:

  check     the server's own config test (certgate check, nginx -t, haproxy -c)
  start     process start -> the first handshake for the LAST name that verifies against
            the CA with hostname checking (polled every 5 ms from this process)
  reload    the last entry switched to another certificate for the same name, then SIGHUP
            (HAProxy: master-worker reload, SIGUSR2) -> the first handshake that serves it
  pss/rss   of the server and its children (smaps_rollup) after start and after the reload
  restart   certgate only: SIGTERM, start again -> first good handshake for the last name,
            served from its stored state (the YAML's certificates are not read)

Medians are printed as a Markdown table.
"""
import json
import os
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import time

from benchlib import CERTGATE, free_port


def served_fingerprint(port, name, ca):
    """SHA-256 of the leaf served for `name`, or None when no verified handshake."""
    context = ssl.create_default_context(cafile=ca)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as raw:
            with context.wrap_socket(raw, server_hostname=name) as tls:
                import hashlib
                return hashlib.sha256(tls.getpeercert(binary_form=True)).hexdigest()
    except (OSError, ssl.SSLError):
        return None


def wait_for(port, name, ca, want=None, limit=600.0):
    """Seconds until a verified handshake for `name` (serving `want`, if given)."""
    start = time.monotonic()
    while time.monotonic() - start < limit:
        got = served_fingerprint(port, name, ca)
        if got is not None and (want is None or got == want):
            return time.monotonic() - start
        time.sleep(0.005)
    raise RuntimeError(f"no good handshake for {name} on {port} within {limit} s")


def touch_every_name(port, names, ca):
    """One handshake for every name, from a few threads."""
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(max_workers=4) as pool:
        failures = sum(1 for got in pool.map(lambda name: served_fingerprint(port, name, ca), names) if got is None)
    if failures:
        raise RuntimeError(f"{failures} names were not served")


def memory_kib(pid):
    """(PSS, RSS) in KiB of `pid` and its children."""
    pids = [pid]
    try:
        pids += [int(p) for p in subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()]
    except OSError:
        pass
    pss = rss = 0
    for p in pids:
        try:
            for line in open(f"/proc/{p}/smaps_rollup"):
                if line.startswith("Pss:"):
                    pss += int(line.split()[1])
                elif line.startswith("Rss:"):
                    rss += int(line.split()[1])
        except OSError:
            pass
    return pss, rss


def fingerprint_of(pem_path):
    import hashlib
    der = ssl.PEM_cert_to_DER_cert(open(pem_path).read())
    return hashlib.sha256(der).hexdigest()


class Server:
    """One server under test: its config, how to start, check and reload it."""

    def __init__(self, kind, work, names, port):
        self.kind, self.work, self.names, self.port = kind, work, names, port
        self.last = names[-1]
        self.folder = os.path.join(work, kind)
        os.makedirs(self.folder, exist_ok=True)
        self.process = None
        self.write_config(spare=False)

    def write_config(self, spare):
        last_cert = os.path.join(self.work, "spare.pem") if spare else os.path.join(self.work, "certs", f"{self.last}.pem")
        if self.kind == "certgate":
            lines = ["log_level: warning", f"state_dir: {self.folder}/state", "listeners:",
                     f"  - {{ name: bench, listen: 127.0.0.1:{self.port} }}",
                     "routes:", "  - { server_names: ['*'], respond: { body: ok } }", "certificates:"]
            for name in self.names:
                cert = last_cert if name == self.last else f"{self.work}/certs/{name}.pem"
                lines.append(f"  {name}: {{ tls_cert: {cert}, tls_key: {cert}.key }}")
            open(os.path.join(self.folder, "certgate.yaml"), "w").write("\n".join(lines) + "\n")
        elif self.kind == "nginx":
            lines = [f"worker_processes 2; pid {self.folder}/nginx.pid; error_log stderr warn; daemon off;",
                     "events { worker_connections 1024; }",
                     "http { access_log off; ssl_protocols TLSv1.2 TLSv1.3; server_names_hash_max_size 262144; server_names_hash_bucket_size 64;"]
            for index, name in enumerate(self.names):
                cert = last_cert if name == self.last else f"{self.work}/certs/{name}.pem"
                default = " default_server" if index == 0 else ""
                lines.append(f"  server {{ listen 127.0.0.1:{self.port} ssl{default}; server_name {name}; "
                             f"ssl_certificate {cert}; ssl_certificate_key {cert}.key; return 200 ok; }}")
            lines.append("}")
            open(os.path.join(self.folder, "nginx.conf"), "w").write("\n".join(lines) + "\n")
        else:  # haproxy: a crt-list, each certificate's key beside it as NAME.pem.key
            with open(os.path.join(self.folder, "crt-list.txt"), "w") as out:
                for name in self.names:
                    cert = last_cert if name == self.last else f"{self.work}/certs/{name}.pem"
                    out.write(f"{cert}\n")
            open(os.path.join(self.folder, "haproxy.cfg"), "w").write(f"""global
  nbthread 2
  log stderr format raw local0 warning
  tune.ssl.cachesize 0
defaults
  mode http
  timeout client 10s
  timeout connect 5s
  timeout server 10s
frontend bench
  bind 127.0.0.1:{self.port} ssl crt-list {self.folder}/crt-list.txt
  http-request return status 200 content-type text/plain string ok
""")

    def command(self, check=False):
        if self.kind == "certgate":
            config = os.path.join(self.folder, "certgate.yaml")
            return [CERTGATE, "check", "--config", config] if check else [CERTGATE, "run", "--config", config]
        if self.kind == "nginx":
            config = os.path.join(self.folder, "nginx.conf")
            return ["nginx", "-t", "-q", "-c", config, "-p", self.folder] if check else ["nginx", "-c", config, "-p", self.folder]
        config = os.path.join(self.folder, "haproxy.cfg")
        return ["haproxy", "-c", "-q", "-f", config] if check else ["haproxy", "-W", "-f", config]

    def check_seconds(self):
        start = time.monotonic()
        result = subprocess.run(self.command(check=True), capture_output=True, text=True)
        elapsed = time.monotonic() - start
        if result.returncode != 0:
            raise RuntimeError(f"{self.kind} check failed: {result.stdout[-2000:]}{result.stderr[-2000:]}")
        return elapsed

    def start(self, ca, arguments=()):
        log = open(os.path.join(self.folder, "server.log"), "a")
        began = time.monotonic()
        self.process = subprocess.Popen(self.command() + list(arguments), stdout=log, stderr=log)
        wait_for(self.port, self.last, ca)
        return time.monotonic() - began

    def reload(self, ca, spare_fingerprint):
        self.write_config(spare=True)
        began = time.monotonic()
        self.process.send_signal(signal.SIGUSR2 if self.kind == "haproxy" else signal.SIGHUP)
        wait_for(self.port, self.last, ca, want=spare_fingerprint)
        return time.monotonic() - began

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT if self.kind == "nginx" else signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        self.write_config(spare=False)


def measure(kind, work, names, runs, ca, spare_fingerprint):
    rows = []
    for _ in range(runs):
        server = Server(kind, work, names, free_port())
        if kind == "certgate":
            shutil.rmtree(os.path.join(server.folder, "state"), ignore_errors=True)
        row = {"check": server.check_seconds()}
        try:
            row["start"] = server.start(ca)
            time.sleep(0.5)
            row["pss_start"], row["rss_start"] = memory_kib(server.process.pid)
            row["reload"] = server.reload(ca, spare_fingerprint)
            time.sleep(0.5)
            row["pss_reload"], row["rss_reload"] = memory_kib(server.process.pid)
            # Memory once every name has been asked for once (certgate makes an entry's
            # NIOSSL objects at its first handshake; every server keeps sessions).
            touch_every_name(server.port, names, ca)
            time.sleep(0.5)
            row["pss_all_served"], _ = memory_kib(server.process.pid)
            if kind == "certgate":
                server.stop()
                row["restart"] = server.start(ca)  # the stored set: generation 1, with the spare
        finally:
            server.stop()
        rows.append(row)
        print(f"  {kind} {len(names)}: " + json.dumps({k: round(v, 3) for k, v in row.items()}), file=sys.stderr)
    return {key: statistics.median(r[key] for r in rows) for key in rows[0]}


def main():
    work, counts, runs, peers_up_to = sys.argv[1], [int(c) for c in sys.argv[2].split(",")], int(sys.argv[3]), int(sys.argv[4])
    servers = sys.argv[5].split(",") if len(sys.argv) > 5 else ["certgate", "nginx", "haproxy"]
    results = {}
    for count in counts:
        folder = os.path.join(work, str(count))
        names = open(os.path.join(folder, "names.txt")).read().split()
        ca = os.path.join(folder, "ca.pem")
        spare = fingerprint_of(os.path.join(folder, "spare.pem"))
        for kind in servers:
            if kind != "certgate" and count > peers_up_to:
                continue
            try:
                results[(kind, count)] = measure(kind, folder, names, runs, ca, spare)
            except Exception as error:  # a peer that cannot take the load is reported, not fatal
                print(f"  {kind} {count}: {error}", file=sys.stderr)
    print("| server | entries | check | start → last name served | SIGHUP (1 changed) → served | PSS after start | PSS after reload | PSS, every name served | RSS after start | restart from state |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for (kind, count), r in sorted(results.items(), key=lambda item: (item[0][1], item[0][0])):
        restart = f"{r['restart']:.2f} s" if "restart" in r else "—"
        all_served = f"{r['pss_all_served'] / 1024:.0f} MiB" if "pss_all_served" in r else "—"
        print(f"| {kind} | {count:,} | {r['check']:.2f} s | {r['start']:.2f} s | {r['reload']:.2f} s | "
              f"{r['pss_start'] / 1024:.0f} MiB | {r['pss_reload'] / 1024:.0f} MiB | {all_served} | {r['rss_start'] / 1024:.0f} MiB | {restart} |")
    baseline = results.get(("certgate", counts[0]))
    if baseline and len(counts) > 1:
        print()
        print("certgate per entry, marginal above the smallest set:")
        for count in counts[1:]:
            r = results.get(("certgate", count))
            if r:
                extra = count - counts[0]
                print(f"- {count:,}: PSS {(r['pss_start'] - baseline['pss_start']) / extra:.2f} KiB/entry after start, "
                      f"{(r['pss_all_served'] - baseline['pss_all_served']) / extra:.2f} KiB/entry once every name was served; "
                      f"reload growth {100 * (r['pss_reload'] - r['pss_start']) / r['pss_start']:.1f} %")


if __name__ == "__main__":
    main()
