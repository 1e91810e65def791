#!/usr/bin/env python3
"""Memory of leaves issued on the fly, through the real binary (not run in CI).

    python3 bench/issued_memory.py [CERTGATE] [N]

Starts `certgate run` (default .build/release/certgate) with a local CA for *.dev.test and a
static entry, then twice on a fresh process: N handshakes of one static name, and N handshakes
of N new names (each signed and cached). Prints the PSS growth per handshake of each; the
difference is what a cached leaf adds beyond what any handshake leaves behind (BoringSSL's
session cache, the heap).
"""
import os, shutil, socket, ssl, subprocess, sys, tempfile, time

binary = sys.argv[1] if len(sys.argv) > 1 else ".build/release/certgate"
count = int(sys.argv[2]) if len(sys.argv) > 2 else 10000
folder = tempfile.mkdtemp(prefix="certgate-issued-")

def openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True)

openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", f"{folder}/ca.key",
        "-out", f"{folder}/ca.pem", "-days", "30", "-subj", "/CN=bench CA",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", f"{folder}/static.key",
        "-out", f"{folder}/static.pem", "-days", "30", "-subj", "/CN=static.test", "-addext", "subjectAltName=DNS:static.test")
with socket.socket() as probe:
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
with open(f"{folder}/certgate.yaml", "w") as f:
    f.write(f"""log_level: warning
state_dir: {folder}/state
listeners:
  - {{ name: https, listen: 127.0.0.1:{port} }}
routes:
  - {{ server_names: ['*'], respond: {{ body: ok }} }}
issuing: {{ cache_size: {2 * count}, rate_per_second: 1000000, burst: 1000000, max_queued: 100000 }}
certificates:
  static: {{ tls_cert: static.pem, tls_key: static.key }}
  dev-ca: {{ tls_cert: ca.pem, tls_key: ca.key, is_ca: true, domains: "*.dev.test" }}
""")

context = ssl.create_default_context()
context.check_hostname = False
context.verify_mode = ssl.CERT_NONE

def handshake(name):
    with socket.create_connection(("127.0.0.1", port)) as raw:
        with context.wrap_socket(raw, server_hostname=name):
            pass

def pss(pid):
    with open(f"/proc/{pid}/smaps_rollup") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("Pss:"))

def measure(mode):
    shutil.rmtree(f"{folder}/state", ignore_errors=True)
    server = subprocess.Popen([os.path.abspath(binary), "run", "--config", f"{folder}/certgate.yaml"], cwd=folder,
                              stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                handshake("static.test")
                break
            except OSError:
                time.sleep(0.05)
        for i in range(200):
            handshake("static.test" if mode == "one static name" else f"warm{i}.dev.test")
        time.sleep(1)
        before = pss(server.pid)
        for i in range(count):
            handshake("static.test" if mode == "one static name" else f"n{i}.dev.test")
        time.sleep(2)
        grown = (pss(server.pid) - before) * 1024 / count
        print(f"{count} handshakes, {mode}: PSS +{grown / 1000:.1f} KB per handshake")
        return grown
    finally:
        server.terminate()
        server.wait()

try:
    same = measure("one static name")
    issued = measure("a new issued name each")
    print(f"a cached issued leaf beyond a handshake's own growth: {(issued - same) / 1000:.1f} KB")
finally:
    shutil.rmtree(folder, ignore_errors=True)
