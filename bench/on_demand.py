#!/usr/bin/env python3
"""On-demand ACME under a storm of names: what 500 random subdomains from one client cost,
and what handshakes for other names see meanwhile. Against a local Pebble that validates
tls-alpn-01 at certgate's own listener. Run by bench/on_demand.sh (which builds certgate in
release mode); not run in CI.

  first      a handshake for a new allowed name: from its start to the verified handshake
             (the order, Pebble's validation at certgate's listener, and the handshake itself)
  storm      500 handshakes for random names under the on-demand pattern from one client,
             32 at a time; the client's hourly limit (per_client_per_hour: 20) caps the
             orders, every other handshake gets the default at once
  probe      back-to-back verified handshakes for a static name: latency while idle and
             during the storm (client, Pebble and certgate share the 2 cores: part of any
             growth is CPU contention, not a stall)
  lag        certgate_event_loop_lag_seconds over the whole run: how late certgate's event
             loops ran a task due every 100 ms (a loop blocked by on-demand work would show)
  memory     certgate's PSS before and after the storm

usage: bench/on_demand.py
"""
import os
import random
import ssl
import subprocess
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from benchlib import CERTGATE, free_port, percentile
from acme import make_ca_and_leaf, wait_until, listening, handshake_seconds, start_pebble, stop_all, Prober


def pss_kib(pid):
    for line in open(f"/proc/{pid}/smaps_rollup"):
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def metrics(port):
    samples = {}
    for line in urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode().splitlines():
        if line and not line.startswith("#"):
            series, value = line.rsplit(" ", 1)
            samples[series] = float(value)
    return samples


def main():
    work = tempfile.mkdtemp(prefix="certgate-on-demand-bench-")
    processes = []
    try:
        https, metrics_port = free_port(), free_port()
        make_ca_and_leaf(work, "static", "Static bench CA", "static.bench.test")
        pebble = start_pebble(work, tls_port=https, http_port=free_port())
        processes += pebble.processes
        log = lambda name: open(f"{work}/{name}.log", "w")
        open(f"{work}/certgate.yaml", "w").write(f"""log_level: error
state_dir: {work}/state
listeners:
  - {{ name: https, listen: 127.0.0.1:{https} }}
routes:
  - {{ server_names: ["*"], respond: {{ body: ok }} }}
acme:
  pebble: {{ directory: "{pebble.directory}", ca_roots: {work}/pebble-https-ca.pem, challenges: [tls-alpn-01] }}
on_demand: {{ per_client_per_hour: 20, orders_per_minute: 60, burst: 20, handshake_wait: 10s }}
certificates:
  static: {{ tls_cert: {work}/static.pem, tls_key: {work}/static.key, domains: static.bench.test, is_default: true }}
  customers: {{ acme: pebble, on_demand: true, domains: "*.customers.bench.test" }}
metrics:
  listen: 127.0.0.1:{metrics_port}
""")
        gateway = subprocess.Popen([CERTGATE, "run", "--config", f"{work}/certgate.yaml"], stdout=log("certgate"), stderr=subprocess.STDOUT)
        processes.append(gateway)
        wait_until(lambda: listening(https) and listening(metrics_port), 30, "certgate")

        static_context = ssl.create_default_context(cafile=f"{work}/static-ca.pem")
        acme_context = ssl.create_default_context(cafile=f"{work}/pebble-root.pem")
        any_context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        any_context.check_hostname = False
        any_context.verify_mode = ssl.CERT_NONE

        first = []
        for index in range(5):
            start = time.perf_counter()
            if handshake_seconds(https, f"first-{index}.customers.bench.test", acme_context) is None:
                raise RuntimeError(f"first-{index} was not served a verifying certificate; see {work}/certgate.log")
            first.append(time.perf_counter() - start)
        served_again = [handshake_seconds(https, "first-0.customers.bench.test", acme_context) for _ in range(20)]

        prober = Prober(https, "static.bench.test", static_context)
        samples = prober.samples
        time.sleep(3)  # idle samples first
        pss_before = pss_kib(gateway.pid)

        names = [f"r{random.getrandbits(32):08x}-{index}.customers.bench.test" for index in range(500)]
        storm_start = time.monotonic()
        with ThreadPoolExecutor(max_workers=32) as pool:
            answered = list(pool.map(lambda name: handshake_seconds(https, name, any_context), names))
        storm_end = time.monotonic()
        time.sleep(2)
        prober.stop()
        pss_after = pss_kib(gateway.pid)

        during = [s for t, s in samples if storm_start <= t <= storm_end]
        idle = [s for t, s in samples if t < storm_start]
        after = metrics(metrics_port)
        lag_count = after.get("certgate_event_loop_lag_seconds_count", 0)
        bucket = lambda le: after.get(f'certgate_event_loop_lag_seconds_bucket{{le="{le}"}}', 0)
        over = lambda le: lag_count - bucket(le)
        refused = {k.split('"')[1]: int(v) for k, v in after.items() if k.startswith("certgate_issue_refused_total{")}
        orders = int(sum(v for k, v in after.items() if k.startswith("certgate_acme_orders_total{") and 'result="valid"' in k))

        ms = lambda seconds: f"{seconds * 1000:.1f} ms"
        print(f"On-demand ACME against Pebble (tls-alpn-01 at certgate's listener), release build\n")
        print(f"| measurement | value |")
        print(f"|---|---|")
        print(f"| first handshake for a new name (order included), median of 5 | {ms(sorted(first)[2])} (min {ms(min(first))}, max {ms(max(first))}) |")
        print(f"| the same name again (from memory), median of 20 | {ms(percentile([s for s in served_again if s], 0.5))} |")
        print(f"| storm: 500 random names, 32 at a time | {storm_end - storm_start:.2f} s, {sum(1 for a in answered if a is not None)} answered |")
        print(f"| orders made (valid) / refused by reason | {orders} / {refused} |")
        print(f"| static-name handshake, idle: median / p99 / max | {ms(percentile(idle, 0.5))} / {ms(percentile(idle, 0.99))} / {ms(max(idle))} ({len(idle)} samples) |")
        print(f"| static-name handshake, during the storm: median / p99 / max | {ms(percentile(during, 0.5))} / {ms(percentile(during, 0.99))} / {ms(max(during))} ({len(during)} samples) |")
        print(f"| event-loop lag samples over the run; late by more than 5 / 10 / 25 ms | {int(lag_count)}; {int(over('0.005'))} / {int(over('0.01'))} / {int(over('0.025'))} |")
        print(f"| certgate PSS before / after the storm | {pss_before / 1024:.1f} / {pss_after / 1024:.1f} MiB |")
    finally:
        stop_all(processes, work)


if __name__ == "__main__":
    main()
