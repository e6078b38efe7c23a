#!/usr/bin/env bash
# A private single-node SLURM cluster on this machine, to try the SLURM path of the sweeps on a laptop.
#
#   sudo slurm/local-cluster.sh start    # installs slurm-wlm + munge with apt-get if missing (Debian/Ubuntu)
#   export SLURM_CONF=/tmp/neve-slurm/slurm.conf   # as printed by start; then sbatch, squeue, submitit work
#   slurm/local-cluster.sh status
#   sudo slurm/local-cluster.sh stop     # cancels every job, stops the three daemons it started
#
# Config, munge key, state and logs live in one directory (default /tmp/neve-slurm, or --dir DIR, or
# NEVE_SLURM_DIR); nothing under /etc is touched. The configuration is the one the tests use:
# tests/slurm_cluster.py owns it, this script only calls it.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
python="${PYTHON:-}"
if [[ -z "$python" ]]; then
    if [[ -x "$here/../.venv/bin/python" ]]; then python="$here/../.venv/bin/python"; else python=python3; fi
fi
exec "$python" "$here/../tests/slurm_cluster.py" "$@"
