#!/usr/bin/env bash
# The IBEX part of postgresql.conf, printed on stdout: the preload, memory and worker settings and
# the ibex.* GUCs. One source for every cluster that runs ibex_pg: the dev and test stacks
# (scripts/stack.sh) and the PostgreSQL image (Dockerfile.postgres, scripts/image-entrypoint.sh).
# Where a cluster listens (port, listen_addresses, socket directory) is the caller's.
# Standalone (no env.sh): the image runs it without the repository.
#
#   pg-conf.sh MODEL_DIR ORT_LIBRARY DATABASE
set -euo pipefail

[ $# -eq 3 ] || { echo "usage: pg-conf.sh MODEL_DIR ORT_LIBRARY DATABASE" >&2; exit 2; }
model_dir=$1 ort_lib=$2 database=$3

cat <<CONF
shared_preload_libraries = 'ibex_pg'
max_connections = 200
shared_buffers = 512MB
maintenance_work_mem = 512MB
work_mem = 16MB
max_worker_processes = 16
ibex.model_dir = '$model_dir'
ibex.ort_library_path = '$ort_lib'
ibex.database = '$database'
ibex.extraction_workers = 2
log_line_prefix = '%m [%p] %q%u@%d '
log_min_messages = info
CONF
