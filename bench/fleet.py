#!/usr/bin/env python3
"""A fleet on PostgreSQL: how fast a commit on one node is served by the others, and how fast
a node catches up. Three release `certgate run` processes share a throw-away PostgreSQL
cluster (initdb + pg_ctl on a free port, default durability settings; as an unprivileged
user when run as root). Run by bench/fleet.sh; not run in CI.

  propagation   ROUNDS upserts of one entry through node 1's socket (`ctl upsert`), its
                certificate alternating between two leaves; per update, from `ctl`'s exit
                (the commit is acknowledged) to the first handshake on node 2 and on node 3
                that serves the new leaf (a thread per node does verified handshakes back to
                back). The nodes' periodic check is 1 h: notification alone tells them.
  catch-up      node 3 stopped (SIGSTOP) while node 1 commits 100 updates of 100 new entries
                each (10,000 changed rows); then SIGCONT: time until node 3 serves the
                fleet's generation (its `ctl status`, polled every 10 ms).

usage: bench/fleet.py ROUNDS
"""
import os
import pwd
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
import uuid

from benchlib import CERTGATE, free_port, percentile
from acme import make_ca_and_leaf, wait_until, listening


def postgres_bin():
    root = "/usr/lib/postgresql"
    for version in sorted((int(v) for v in os.listdir(root) if v.isdigit()), reverse=True):
        if os.access(f"{root}/{version}/bin/pg_ctl", os.X_OK):
            return f"{root}/{version}/bin"
    raise RuntimeError("PostgreSQL is missing: apt-get install postgresql")


class Cluster:
    """initdb + pg_ctl in a temporary folder; superuser certgate with a random password."""

    def __init__(self, work):
        self.bin = postgres_bin()
        self.folder = os.path.join(work, "pg")
        os.makedirs(self.folder, mode=0o755)
        self.data = os.path.join(self.folder, "data")
        os.mkdir(self.data, 0o700)
        self.password = uuid.uuid4().hex
        password_file = os.path.join(self.folder, "password")
        open(password_file, "w").write(self.password)
        self.user = None
        if os.geteuid() == 0:
            name = "postgres" if any(p.pw_name == "postgres" for p in pwd.getpwall()) else "nobody"
            self.user = pwd.getpwnam(name)
            os.chmod(work, 0o755)
            for path in (self.data, password_file):
                os.chown(path, self.user.pw_uid, self.user.pw_gid)
        self.run("initdb", "-D", self.data, "-U", "certgate", f"--pwfile={password_file}", "--auth=scram-sha-256", "-E", "UTF8")
        self.port = free_port()
        self.run("pg_ctl", "-D", self.data, "-l", f"{self.data}/server.log", "-w", "-t", "30", "-o",
                 f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c max_connections=50", "start")
        self.psql("CREATE DATABASE certgate", database="postgres")

    def run(self, tool, *arguments):
        command = [f"{self.bin}/{tool}", *arguments]
        if self.user:
            command = ["setpriv", f"--reuid={self.user.pw_uid}", f"--regid={self.user.pw_gid}", "--clear-groups", "--", *command]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/tmp")

    def psql(self, sql, database="certgate"):
        return subprocess.run([f"{self.bin}/psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "certgate", "-d", database,
                               "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql],
                              check=True, capture_output=True, text=True, env=dict(os.environ, PGPASSWORD=self.password)).stdout.strip()

    def url(self):
        return f"postgres://certgate@127.0.0.1:{self.port}/certgate?sslmode=disable"

    def stop(self):
        self.run("pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop")

    def close(self):
        """Stops the server if it still runs (at the end of a benchmark, whatever happened)."""
        try:
            self.stop()
        except (OSError, subprocess.CalledProcessError):
            pass


class Node:
    def __init__(self, work, name, cluster, certificates):
        self.folder = os.path.join(work, name)
        os.makedirs(self.folder)
        self.port = free_port()
        open(os.path.join(self.folder, "pg.pass"), "w").write(cluster.password + "\n")
        open(os.path.join(self.folder, "certgate.yaml"), "w").write(f"""log_level: warning
listeners:
  - name: https
    listen: 127.0.0.1:{self.port}
routes:
  - server_names: ["*"]
    respond: {{ body: "ok\\n" }}
state_dir: state
control:
  socket: control.sock
shared_state:
  postgres: {cluster.url()}
  password_file: pg.pass
  node: {name}
  poll_interval: 1h
certificates:
{certificates}""")
        self.socket = os.path.join(self.folder, "control.sock")
        self.process = subprocess.Popen([CERTGATE, "run", "--config", os.path.join(self.folder, "certgate.yaml")],
                                        stdout=subprocess.DEVNULL, stderr=open(os.path.join(self.folder, "certgate.log"), "w"))
        wait_until(lambda: listening(self.port) and os.path.exists(self.socket), 60, f"{name} starting")

    def ctl(self, *arguments):
        return subprocess.run([CERTGATE, "ctl", "--socket", self.socket, *arguments], check=True, capture_output=True, text=True).stdout

    def generation(self):
        import json
        return int(json.loads(self.ctl("--json", "status"))["generation"])

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            self.process.wait()


def served_leaf(port, context):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as raw:
            with context.wrap_socket(raw, server_hostname="bench.test") as tls:
                return tls.getpeercert(binary_form=True)
    except (OSError, ssl.SSLError):
        return None


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    work = tempfile.mkdtemp(prefix="certgate-fleet-bench-")
    nodes = []
    cluster = None
    try:
        cluster = Cluster(work)
        make_ca_and_leaf(work, "a", "Fleet bench CA A", "bench.test")
        make_ca_and_leaf(work, "b", "Fleet bench CA B", "bench.test")
        leaves = {}
        for prefix in ("a", "b"):
            from cryptography import x509
            from cryptography.hazmat.primitives.serialization import Encoding
            leaves[prefix] = x509.load_pem_x509_certificate(open(f"{work}/{prefix}.pem", "rb").read()).public_bytes(Encoding.DER)
        for prefix in ("a", "b"):
            open(f"{work}/upsert-{prefix}.yaml", "w").write(
                f"certificates:\n  bench: {{ tls_cert: {work}/{prefix}.pem, tls_key: {work}/{prefix}.key, domains: [bench.test] }}\n")
        seed = f"  bench: {{ tls_cert: {work}/a.pem, tls_key: {work}/a.key, domains: [bench.test] }}\n"
        for index in range(1, 4):
            nodes.append(Node(work, f"node-{index}", cluster, seed))

        contexts = {}
        for prefix in ("a", "b"):
            context = ssl.create_default_context(cafile=f"{work}/{prefix}-ca.pem")
            contexts[prefix] = context
        # One context trusting both CAs: each handshake verifies, whichever leaf it gets.
        both = ssl.create_default_context()
        both.load_verify_locations(cafile=f"{work}/a-ca.pem")
        both.load_verify_locations(cafile=f"{work}/b-ca.pem")

        latencies = {2: [], 3: []}
        failures = {2: 0, 3: 0}
        for round_ in range(rounds):
            prefix = "b" if round_ % 2 == 0 else "a"
            nodes[0].ctl("upsert", f"{work}/upsert-{prefix}.yaml")
            acknowledged = time.perf_counter()
            results = {}

            def probe(index):
                deadline = acknowledged + 10
                while time.perf_counter() < deadline:
                    leaf = served_leaf(nodes[index - 1].port, both)
                    if leaf is None:
                        failures[index] += 1
                    elif leaf == leaves[prefix]:
                        results[index] = time.perf_counter() - acknowledged
                        return

            threads = [threading.Thread(target=probe, args=(index,)) for index in (2, 3)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            for index in (2, 3):
                if index not in results:
                    raise RuntimeError(f"round {round_}: node-{index} did not serve the new leaf within 10 s")
                latencies[index].append(results[index] * 1000)
        every = latencies[2] + latencies[3]
        generation = cluster.psql("SELECT generation FROM certgate_fleet")

        # Catch-up: node 3 misses 100 commits of 100 new entries.
        batches = 100
        for batch in range(batches):
            lines = ["certificates:"]
            for item in range(100):
                number = batch * 100 + item
                lines.append(f"  e{number}: {{ tls_cert: {work}/a.pem, tls_key: {work}/a.key, domains: [e{number}.bench.test] }}")
            open(f"{work}/batch-{batch}.yaml", "w").write("\n".join(lines) + "\n")
        nodes[2].process.send_signal(signal.SIGSTOP)
        for batch in range(batches):
            nodes[0].ctl("upsert", f"{work}/batch-{batch}.yaml")
        latest = int(cluster.psql("SELECT generation FROM certgate_fleet"))
        resumed = time.perf_counter()
        nodes[2].process.send_signal(signal.SIGCONT)
        wait_until(lambda: nodes[2].generation() == latest, 120, "node-3 catching up")
        catch_up = time.perf_counter() - resumed

        print(f"propagation over {rounds} updates (ms from the acknowledged commit on node-1 to the first handshake serving it):")
        print("| node | p50 | p90 | p99 | max | failed handshakes |")
        print("|---|---|---|---|---|---|")
        for index in (2, 3):
            values = latencies[index]
            print(f"| node-{index} | {statistics.median(values):.1f} | {percentile(values, 0.9):.1f} | {percentile(values, 0.99):.1f} | {max(values):.1f} | {failures[index]} |")
        print(f"| both | {statistics.median(every):.1f} | {percentile(every, 0.9):.1f} | {percentile(every, 0.99):.1f} | {max(every):.1f} | {failures[2] + failures[3]} |")
        print(f"(fleet generation after the propagation rounds: {generation})")
        print(f"catch-up: node-3 missed {batches} commits of 100 new entries (10,000 rows); "
              f"SIGCONT -> serving generation {latest}: {catch_up * 1000:.0f} ms (ctl status polled, ~15 ms resolution)")
    finally:
        for node in nodes:
            node.stop()
        if cluster:
            cluster.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
