#!/usr/bin/env python3
"""certgate-control-bench with the set on PostgreSQL (shared_state): load 100,000 entries
through the socket, upsert 1 entry into them (median, p90), restart from the fleet's set.
Run by bench/fleet.sh after bench/fleet.py; not run in CI."""
import os
import shutil
import subprocess
import tempfile

from benchlib import ROOT
from fleet import Cluster


def main():
    work = tempfile.mkdtemp(prefix="certgate-fleet-scale-")
    cluster = None
    try:
        cluster = Cluster(work)
        password_file = os.path.join(work, "pg.pass")
        open(password_file, "w").write(cluster.password + "\n")
        subprocess.run([os.path.join(ROOT, ".build/release/certgate-control-bench"), "--postgres", cluster.url(),
                        "--password-file", password_file], check=True, cwd=ROOT)
    finally:
        if cluster:
            cluster.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
