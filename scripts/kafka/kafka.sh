#!/usr/bin/env bash
# Local single-node Kafka (KRaft, broker+controller in one JVM) for development and tests.
# No Docker: the broker classpath comes from Maven Central (see pom.xml) and runs on the local JDK.
#
# Usage: scripts/kafka/kafka.sh fetch|start|stop|status|logs [tail args]|reset
#
# Environment:
#   KAFKA_PORT=9092  KAFKA_CONTROLLER_PORT=9093  KAFKA_START_TIMEOUT=90 (s)  KAFKA_STOP_TIMEOUT=30 (s)
#   KAFKA_HEAP_OPTS="-Xms256m -Xmx512m"
#   KAFKA_CACHE_DIR=<repo>/.cache/kafka-<version>   (downloaded jars)
#   KAFKA_RUN_DIR=<repo>/.cache/kafka-run           (config, data, pid file, broker.log)
#   JAVA_HOME / MVN  to pick other java / mvn binaries
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/../.." && pwd)
POM="$SCRIPT_DIR/pom.xml"
KAFKA_VERSION=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$POM")

absolute() { case $1 in /*) printf '%s\n' "$1" ;; *) printf '%s\n' "$PWD/$1" ;; esac; }

CACHE_DIR=$(absolute "${KAFKA_CACHE_DIR:-$REPO_ROOT/.cache/kafka-$KAFKA_VERSION}")
RUN_DIR=$(absolute "${KAFKA_RUN_DIR:-$REPO_ROOT/.cache/kafka-run}")
LIBS="$CACHE_DIR/libs"
FETCH_MARKER="$CACHE_DIR/.fetched"
PROBE_DIR="$CACHE_DIR/probe"

HOST=127.0.0.1
PORT=${KAFKA_PORT:-9092}
CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-9093}
START_TIMEOUT=${KAFKA_START_TIMEOUT:-90}
STOP_TIMEOUT=${KAFKA_STOP_TIMEOUT:-30}
HEAP_OPTS=${KAFKA_HEAP_OPTS:--Xms256m -Xmx512m}

DATA_DIR="$RUN_DIR/data"
PID_FILE="$RUN_DIR/kafka.pid"
LOG_FILE="$RUN_DIR/broker.log"
OUT_FILE="$RUN_DIR/broker.out" # JVM stdout/stderr: only crashes before logging is up land here
SERVER_PROPS="$RUN_DIR/server.properties"
BROKER_LOG4J="$RUN_DIR/log4j.properties"
TOOLS_LOG4J="$RUN_DIR/tools-log4j.properties"
CLUSTER_ID_FILE="$RUN_DIR/cluster.id"

JAVA=${JAVA_HOME:+$JAVA_HOME/bin/}java
JAVAC=${JAVA_HOME:+$JAVA_HOME/bin/}javac
MVN=${MVN:-mvn}
# shellcheck source=maven-fetch.sh
source "$SCRIPT_DIR/maven-fetch.sh"

log() { printf 'kafka: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

now_ms() {
  if [[ -n ${EPOCHREALTIME:-} ]]; then
    local us=${EPOCHREALTIME//[!0-9]/}
    echo $((us / 1000))
  else
    echo $(($(date +%s) * 1000))
  fi
}

# Serialises fetches and start/stop/reset, so parallel callers (e.g. test workers) neither download
# twice nor launch two brokers that overwrite each other's pid file. The kernel drops the lock when
# the holder dies. flock is Linux-only; elsewhere we run unlocked.
have_flock() { command -v flock >/dev/null 2>&1; }
lock_cache() {
  mkdir -p "$CACHE_DIR"
  have_flock || return 0
  exec 8>"$CACHE_DIR/.lock"
  flock 8
}
lock_run() {
  mkdir -p "$RUN_DIR"
  have_flock || return 0
  exec 9>"$RUN_DIR/.lock"
  flock 9
}

# ---------------------------------------------------------------- fetch

fetch() {
  lock_cache
  if [[ -f $FETCH_MARKER ]]; then
    log "kafka $KAFKA_VERSION already fetched into $LIBS"
    return
  fi
  command -v "$MVN" >/dev/null 2>&1 || die "maven ('$MVN') is needed once to download the broker"
  log "fetching kafka $KAFKA_VERSION from Maven Central into $LIBS (one-time, ~50 MB)..."
  local started
  started=$(now_ms)
  maven_fetch "$POM" "$LIBS" "kafka_2.13-$KAFKA_VERSION.jar" || die "fetching the broker's jars failed"
  touch "$FETCH_MARKER"
  log "fetched $(find "$LIBS" -name '*.jar' | wc -l | tr -d ' ') jars ($(du -sh "$LIBS" | cut -f1)) in $(fmt_secs $(($(now_ms) - started)))"
}

ensure_fetched() { [[ -f $FETCH_MARKER ]] || fetch; }

fmt_secs() { printf '%d.%ds' $(($1 / 1000)) $(($1 % 1000 / 100)); }

# ---------------------------------------------------------------- process helpers

read_pid() { [[ -f $PID_FILE ]] && tr -dc '0-9' <"$PID_FILE"; }

# True only if the pid is alive AND is our broker: guards against pid reuse after a reboot or crash.
is_broker_pid() {
  [[ -n ${1:-} ]] && ps -p "$1" -o args= 2>/dev/null | grep -q 'kafka\.Kafka'
}

running_pid() {
  local pid
  pid=$(read_pid) || return 1
  is_broker_pid "$pid" && echo "$pid"
}

port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

# Compiled once instead of run in source-launch mode: that costs ~1 s of CPU on every start,
# competing with the booting broker. Recompiled whenever KafkaReady.java changes.
ensure_probe() {
  local src="$SCRIPT_DIR/KafkaReady.java" tmp
  [[ $PROBE_DIR/KafkaReady.class -nt $src ]] && return
  lock_cache
  tmp=$(mktemp -d "$CACHE_DIR/probe.partial.XXXXXX")
  "$JAVAC" -d "$tmp" -cp "$LIBS/*" "$src"
  chmod 755 "$tmp"
  rm -rf "$PROBE_DIR"
  mv "$tmp" "$PROBE_DIR"
}

# Real readiness: a DescribeCluster round trip through kafka-clients' Admin (see KafkaReady.java).
probe() { # probe <timeoutMs> [pidToWatch]
  "$JAVA" -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -cp "$PROBE_DIR:$LIBS/*" \
    -Dlog4j.configuration="file:$TOOLS_LOG4J" KafkaReady "$HOST:$PORT" "$@"
}

# The tool config must exist before any probe, even when the broker was started by someone else.
write_tools_log4j() {
  mkdir -p "$RUN_DIR"
  cat >"$TOOLS_LOG4J" <<'EOF'
log4j.rootLogger=ERROR, stderr
log4j.appender.stderr=org.apache.log4j.ConsoleAppender
log4j.appender.stderr.Target=System.err
log4j.appender.stderr.layout=org.apache.log4j.PatternLayout
log4j.appender.stderr.layout.ConversionPattern=[%d] %p %m (%c)%n
EOF
}

show_log_tail() {
  local f
  for f in "$OUT_FILE" "$LOG_FILE"; do
    [[ -s $f ]] || continue
    log "---- last 40 lines of $f ----"
    tail -n 40 "$f" >&2
  done
}

# ---------------------------------------------------------------- config

write_config() {
  mkdir -p "$DATA_DIR"
  cat >"$SERVER_PROPS" <<EOF
# Generated by scripts/kafka/kafka.sh on every start; edits are overwritten.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$HOST:$CONTROLLER_PORT
listeners=PLAINTEXT://$HOST:$PORT,CONTROLLER://$HOST:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$HOST:$PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$DATA_DIR

# Single node: the defaults assume 3 brokers, and consumer groups then hang on
# "group coordinator is not available".
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
default.replication.factor=1
min.insync.replicas=1
num.partitions=1
# Otherwise every first group join waits 3 s.
group.initial.rebalance.delay.ms=0
# After a crash (kill -9) the controller refuses the restarted broker's registration until the
# old session expires: 9 s by default, which made restarts take ~16 s.
broker.session.timeout.ms=3000
broker.heartbeat.interval.ms=500
# Topics must be created explicitly, so a typo in a topic name fails loudly.
auto.create.topics.enable=false
EOF

  cat >"$BROKER_LOG4J" <<EOF
log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.RollingFileAppender
log4j.appender.file.File=$LOG_FILE
log4j.appender.file.MaxFileSize=20MB
log4j.appender.file.MaxBackupIndex=2
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n

log4j.logger.kafka=INFO
log4j.logger.org.apache.kafka=INFO
log4j.logger.kafka.request.logger=WARN
log4j.logger.kafka.authorizer.logger=WARN
log4j.logger.state.change.logger=WARN
log4j.logger.org.apache.kafka.clients=WARN
log4j.logger.org.apache.kafka.common.utils.AppInfoParser=WARN
log4j.logger.org.apache.kafka.common.config.AbstractConfig=WARN
EOF
}

format_storage() {
  [[ -f $DATA_DIR/meta.properties ]] && return
  if [[ ! -s $CLUSTER_ID_FILE ]]; then
    "$JAVA" -cp "$LIBS/*" -Dlog4j.configuration="file:$TOOLS_LOG4J" \
      kafka.tools.StorageTool random-uuid >"$CLUSTER_ID_FILE.tmp"
    mv "$CLUSTER_ID_FILE.tmp" "$CLUSTER_ID_FILE"
  fi
  log "formatting $DATA_DIR (cluster id $(<"$CLUSTER_ID_FILE"))"
  "$JAVA" -cp "$LIBS/*" -Dlog4j.configuration="file:$TOOLS_LOG4J" \
    kafka.tools.StorageTool format -t "$(<"$CLUSTER_ID_FILE")" -c "$SERVER_PROPS" --ignore-formatted >/dev/null
}

# ---------------------------------------------------------------- commands

start() {
  command -v "$JAVAC" >/dev/null 2>&1 || die "a JDK 17+ (with javac) is needed (install it or set JAVA_HOME)"
  ensure_fetched
  ensure_probe
  lock_run
  write_tools_log4j
  local started pid
  started=$(now_ms)

  if pid=$(running_pid); then
    grep -q "^listeners=PLAINTEXT://$HOST:$PORT," "$SERVER_PROPS" ||
      die "broker (pid $pid) is running with other ports ($(grep '^listeners=' "$SERVER_PROPS")); stop it first"
    if probe 5000 "$pid" >/dev/null 2>&1; then
      log "already running (pid $pid) on $HOST:$PORT"
      return
    fi
    log "broker (pid $pid) is running but not answering on $HOST:$PORT yet; waiting"
    wait_ready "$pid" "$started"
    return
  fi
  if [[ -f $PID_FILE ]]; then
    log "removing stale pid file (pid $(read_pid) is gone)"
    rm -f "$PID_FILE"
  fi

  if port_open "$PORT"; then
    if probe 5000 >/dev/null 2>&1; then
      log "a Kafka broker not managed by this script already answers on $HOST:$PORT; using it"
      return
    fi
    die "port $PORT is in use by something that is not a Kafka broker (set KAFKA_PORT to use another port)"
  fi
  port_open "$CONTROLLER_PORT" &&
    die "controller port $CONTROLLER_PORT is already in use (set KAFKA_CONTROLLER_PORT to use another port)"

  write_config
  format_storage

  : >"$OUT_FILE"
  local -a launcher=(nohup)
  # setsid: own session, so Ctrl-C in the calling terminal does not reach the broker.
  command -v setsid >/dev/null 2>&1 && launcher+=(setsid)
  # shellcheck disable=SC2086 # HEAP_OPTS is deliberately word-split
  "${launcher[@]}" "$JAVA" $HEAP_OPTS -Djava.awt.headless=true \
    -Dlog4j.configuration="file:$BROKER_LOG4J" \
    -cp "$LIBS/*" kafka.Kafka "$SERVER_PROPS" \
    </dev/null >>"$OUT_FILE" 2>&1 8>&- 9>&- &
  pid=$!
  echo "$pid" >"$PID_FILE"
  log "started broker (pid $pid), waiting up to ${START_TIMEOUT}s for it to answer on $HOST:$PORT"
  wait_ready "$pid" "$started"
}

wait_ready() { # wait_ready <pid> <startedMs>
  local pid=$1 started=$2 rc=0 detail
  detail=$(probe $((START_TIMEOUT * 1000)) "$pid" 2>&1) || rc=$?
  case $rc in
    0)
      echo "kafka $KAFKA_VERSION ready on $HOST:$PORT in $(fmt_secs $(($(now_ms) - started))) (pid $pid, $detail)"
      ;;
    2)
      rm -f "$PID_FILE"
      show_log_tail
      die "broker process exited during startup"
      ;;
    *)
      show_log_tail
      log "$detail"
      log "not ready after ${START_TIMEOUT}s; stopping it"
      stop_pid "$pid"
      die "broker did not become ready within ${START_TIMEOUT}s (KAFKA_START_TIMEOUT)"
      ;;
  esac
}

wait_gone() { # wait_gone <pid> <seconds>
  local tries=$(($2 * 5))
  while is_broker_pid "$1"; do
    ((tries-- > 0)) || return 1
    sleep 0.2
  done
}

stop_pid() {
  local pid=$1
  kill -TERM "$pid" 2>/dev/null || true
  if ! wait_gone "$pid" "$STOP_TIMEOUT"; then
    log "pid $pid still alive after ${STOP_TIMEOUT}s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    wait_gone "$pid" 5 || log "warning: pid $pid survived SIGKILL"
  fi
  rm -f "$PID_FILE"
}

stop() {
  lock_run
  local pid
  if ! pid=$(running_pid); then
    rm -f "$PID_FILE"
    log "not running"
    return
  fi
  log "stopping broker (pid $pid)"
  stop_pid "$pid"
  log "stopped"
}

status() {
  local pid
  if pid=$(running_pid); then
    echo "kafka $KAFKA_VERSION running (pid $pid) on $HOST:$PORT"
  else
    echo "kafka $KAFKA_VERSION not running (port $PORT)"
    return 3
  fi
}

logs() {
  [[ -f $LOG_FILE ]] || die "no broker log yet ($LOG_FILE)"
  if (($#)); then tail "$@" "$LOG_FILE"; else tail -n 100 "$LOG_FILE"; fi
}

reset() {
  stop
  rm -rf "$DATA_DIR"
  log "wiped $DATA_DIR"
}

usage() {
  sed -n '2,12s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
  exit 2
}

cmd=${1:-}
[[ $# -gt 0 ]] && shift
case $cmd in
  fetch) fetch ;;
  start) start ;;
  stop) stop ;;
  status) status ;;
  logs) logs "$@" ;;
  reset) reset ;;
  *) usage ;;
esac
