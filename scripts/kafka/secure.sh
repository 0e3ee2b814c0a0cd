#!/usr/bin/env bash
# A local single-node broker whose client listener is SASL_SSL (127.0.0.1:29092; PLAIN, SCRAM-SHA-256,
# SCRAM-SHA-512, OAUTHBEARER) with an SSL listener requiring client certificates on 29095: kafka.sh with
# KAFKA_SASL_SSL=1. The CA, certificates and SASL credentials are generated into
# .cache/kafka-secure/secrets (credentials.env holds the client settings). Same commands as kafka.sh.
set -euo pipefail
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export KAFKA_SASL_SSL=1
export KAFKA_NODES=1
export KAFKA_PORT=${KAFKA_SECURE_PORT:-29092}
export KAFKA_CONTROLLER_PORT=${KAFKA_SECURE_CONTROLLER_PORT:-29093}
export KAFKA_RUN_DIR=${KAFKA_SECURE_RUN_DIR:-$(cd "$SCRIPT_DIR/../.." && pwd)/.cache/kafka-secure}
export KAFKA_HEAP_OPTS=${KAFKA_SECURE_HEAP_OPTS:--Xms128m -Xmx384m}
exec bash "$SCRIPT_DIR/kafka.sh" "$@"
