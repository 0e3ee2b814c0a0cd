#!/usr/bin/env bash
# A local 3-node KRaft cluster (each node broker+controller) beside the single-node broker:
# kafka.sh with KAFKA_NODES=3, brokers on 127.0.0.1:19092,19094,19096 (controllers 19093,19095,19097),
# data under .cache/kafka-cluster/node-<i>. Same commands as kafka.sh (kill <node> / pid <node> too).
set -euo pipefail
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export KAFKA_NODES=3
export KAFKA_PORT=${KAFKA_CLUSTER_PORT:-19092}
export KAFKA_CONTROLLER_PORT=${KAFKA_CLUSTER_CONTROLLER_PORT:-19093}
export KAFKA_RUN_DIR=${KAFKA_CLUSTER_RUN_DIR:-$(cd "$SCRIPT_DIR/../.." && pwd)/.cache/kafka-cluster}
export KAFKA_HEAP_OPTS=${KAFKA_CLUSTER_HEAP_OPTS:--Xms128m -Xmx384m}
exec bash "$SCRIPT_DIR/kafka.sh" "$@"
