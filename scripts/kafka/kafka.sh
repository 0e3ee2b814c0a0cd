#!/usr/bin/env bash
# Local Kafka (KRaft, each node broker+controller in one JVM) for development and tests.
# No Docker: the broker classpath comes from Maven Central (see pom.xml) and runs on the local JDK.
#
# Usage: scripts/kafka/kafka.sh fetch|start|stop|status|logs [tail args]|reset|kill <node>|pid <node>
#   start also restarts nodes that are down; kill SIGKILLs one node (fault tests).
#
# Environment:
#   KAFKA_PORT=9092  KAFKA_CONTROLLER_PORT=9093  KAFKA_START_TIMEOUT=90 (s)  KAFKA_STOP_TIMEOUT=30 (s)
#   KAFKA_NODES=1      node i (1-based) listens on KAFKA_PORT+2(i-1), its controller on KAFKA_CONTROLLER_PORT+2(i-1)
#   KAFKA_SASL_SSL=0   1: one node whose KAFKA_PORT is SASL_SSL, +2 PLAINTEXT (inter-broker), +3 SSL with client certs
#   KAFKA_HEAP_OPTS="-Xms256m -Xmx512m"
#   KAFKA_CACHE_DIR=<repo>/.cache/kafka-<version>   (downloaded jars)
#   KAFKA_RUN_DIR=<repo>/.cache/kafka-run           (config, data, pid files, logs; node-<i>/ per node when >1)
#   JAVA_HOME / MVN  to pick other java / mvn binaries
# scripts/kafka/cluster.sh (3 nodes, 19092-19097) and secure.sh (SASL_SSL, 29092-29095) set these.
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
NODES=${KAFKA_NODES:-1}
SASL_SSL=${KAFKA_SASL_SSL:-0}
START_TIMEOUT=${KAFKA_START_TIMEOUT:-90}
STOP_TIMEOUT=${KAFKA_STOP_TIMEOUT:-30}
HEAP_OPTS=${KAFKA_HEAP_OPTS:--Xms256m -Xmx512m}

[[ $NODES =~ ^[1-9]$ ]] || { echo "kafka: error: KAFKA_NODES must be 1-9" >&2; exit 1; }
[[ $SASL_SSL == 1 && $NODES != 1 ]] && { echo "kafka: error: KAFKA_SASL_SSL=1 runs one node" >&2; exit 1; }

TOOLS_LOG4J="$RUN_DIR/tools-log4j.properties"
CLUSTER_ID_FILE="$RUN_DIR/cluster.id"
SECRETS_DIR="$RUN_DIR/secrets"

# One node keeps the historical layout (data/, kafka.pid, broker.log directly in RUN_DIR).
node_dir() { if ((NODES == 1)); then echo "$RUN_DIR"; else echo "$RUN_DIR/node-$1"; fi; }
node_port() { echo $((PORT + 2 * ($1 - 1))); }
node_controller_port() { echo $((CONTROLLER_PORT + 2 * ($1 - 1))); }
pid_file() { echo "$(node_dir "$1")/kafka.pid"; }
log_file() { echo "$(node_dir "$1")/broker.log"; }
out_file() { echo "$(node_dir "$1")/broker.out"; } # JVM stdout/stderr: only crashes before logging is up land here
props_file() { echo "$(node_dir "$1")/server.properties"; }

# With SASL_SSL, clients use KAFKA_PORT; tools (the readiness probe) and the broker itself use the
# PLAINTEXT listener next to it, and KAFKA_PORT+3 is SSL with client certificates.
INTERNAL_PORT=$((PORT + 2))
SSL_PORT=$((PORT + 3))
probe_port() { if [[ $SASL_SSL == 1 ]]; then echo "$INTERNAL_PORT"; else node_port "$1"; fi; }
all_nodes() { seq 1 "$NODES"; }
bootstrap() { # bootstrap [nodes...] (default: all)
  local i list=() nodes=("$@")
  ((${#nodes[@]})) || mapfile -t nodes < <(all_nodes)
  for i in "${nodes[@]}"; do list+=("$HOST:$(probe_port "$i")"); done
  local IFS=,
  echo "${list[*]}"
}
client_ports() {
  local i list=()
  for i in $(all_nodes); do list+=("$(node_port "$i")"); done
  echo "${list[*]}"
}

JAVA=${JAVA_HOME:+$JAVA_HOME/bin/}java
JAVAC=${JAVA_HOME:+$JAVA_HOME/bin/}javac
KEYTOOL=${JAVA_HOME:+$JAVA_HOME/bin/}keytool
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

read_pid() { local f; f=$(pid_file "$1"); [[ -f $f ]] && tr -dc '0-9' <"$f"; }

# True only if the pid is alive AND is our broker: guards against pid reuse after a reboot or crash.
is_broker_pid() {
  [[ -n ${1:-} ]] && ps -p "$1" -o args= 2>/dev/null | grep -q 'kafka\.Kafka'
}

running_pid() { # running_pid <node>
  local pid
  pid=$(read_pid "$1") || return 1
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
probe() { # probe <bootstrap> <timeoutMs> <expectedNodes> [pidsToWatch...]
  "$JAVA" -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -cp "$PROBE_DIR:$LIBS/*" \
    -Dlog4j.configuration="file:$TOOLS_LOG4J" KafkaReady "$@"
}

# The tool config must exist before any probe, even when the broker was started by someone else.
write_tools_log4j() {
  mkdir -p "$RUN_DIR"
  cat >"$TOOLS_LOG4J" <<'EOT'
log4j.rootLogger=ERROR, stderr
log4j.appender.stderr=org.apache.log4j.ConsoleAppender
log4j.appender.stderr.Target=System.err
log4j.appender.stderr.layout=org.apache.log4j.PatternLayout
log4j.appender.stderr.layout.ConversionPattern=[%d] %p %m (%c)%n
EOT
}

show_log_tail() { # show_log_tail <node>
  local f
  for f in "$(out_file "$1")" "$(log_file "$1")"; do
    [[ -s $f ]] || continue
    log "---- last 40 lines of $f ----"
    tail -n 40 "$f" >&2
  done
}

# ---------------------------------------------------------------- TLS and SASL material

# A CA, a server certificate for 127.0.0.1/localhost and a client certificate (all PEM, the server's
# also as PKCS12 for the broker), plus random passwords for the SASL user. Made once per RUN_DIR.
write_secrets() {
  [[ -f $SECRETS_DIR/credentials.env ]] && return
  command -v openssl >/dev/null 2>&1 || die "openssl is needed to generate the certificates"
  command -v "$KEYTOOL" >/dev/null 2>&1 || die "keytool (from the JDK) is needed for the truststore"
  local dir="$SECRETS_DIR.partial"
  rm -rf "$dir"
  mkdir -p "$dir"
  local store_pass sasl_pass
  store_pass=$(openssl rand -hex 16)
  sasl_pass=$(openssl rand -hex 16)
  (
    cd "$dir"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=kpipe local CA" \
      -keyout ca.key -out ca.pem 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >server.ext
    printf 'extendedKeyUsage=clientAuth\n' >client.ext
    local name
    for name in server client; do
      openssl req -newkey rsa:2048 -nodes -subj "/CN=kpipe-$name" -keyout "$name.key" -out "$name.csr" 2>/dev/null
      openssl x509 -req -in "$name.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 3650 \
        -extfile "$name.ext" -out "$name.pem" 2>/dev/null
    done
    openssl pkcs12 -export -in server.pem -inkey server.key -certfile ca.pem -name kafka \
      -passout "pass:$store_pass" -out server.p12
    "$KEYTOOL" -importcert -noprompt -alias ca -file ca.pem -keystore truststore.p12 -storetype PKCS12 \
      -storepass "$store_pass" >/dev/null 2>&1
    rm -f ./*.csr ./*.ext ca.srl
    printf '%s\n' "$store_pass" >store.password
    cat >credentials.env <<EOT
KAFKA_SASL_USERNAME=kpipe
KAFKA_SASL_PASSWORD=$sasl_pass
KAFKA_SSL_CA_FILE=$SECRETS_DIR/ca.pem
KAFKA_SSL_CERT_FILE=$SECRETS_DIR/client.pem
KAFKA_SSL_KEY_FILE=$SECRETS_DIR/client.key
EOT
    chmod 600 ./*.key credentials.env store.password
  )
  rm -rf "$SECRETS_DIR"
  mv "$dir" "$SECRETS_DIR"
  log "generated a CA, certificates and SASL credentials in $SECRETS_DIR"
}

secret() { sed -n "s/^$1=//p" "$SECRETS_DIR/credentials.env"; }

# ---------------------------------------------------------------- config

voters() {
  local i list=()
  for i in $(all_nodes); do list+=("$i@$HOST:$(node_controller_port "$i")"); done
  local IFS=,
  echo "${list[*]}"
}

write_config() { # write_config <node>
  local node=$1 dir port cport rf min_isr
  dir=$(node_dir "$node")
  port=$(node_port "$node")
  cport=$(node_controller_port "$node")
  rf=$((NODES < 3 ? NODES : 3))
  min_isr=$((rf > 1 ? rf - 1 : 1))
  mkdir -p "$dir/data"
  {
    cat <<EOT
# Generated by scripts/kafka/kafka.sh on every start; edits are overwritten.
process.roles=broker,controller
node.id=$node
controller.quorum.voters=$(voters)
controller.listener.names=CONTROLLER
log.dirs=$dir/data
EOT
    if [[ $SASL_SSL == 1 ]]; then
      local store_pass user pass
      store_pass=$(<"$SECRETS_DIR/store.password")
      user=$(secret KAFKA_SASL_USERNAME)
      pass=$(secret KAFKA_SASL_PASSWORD)
      cat <<EOT
listeners=SASL_SSL://$HOST:$port,CONTROLLER://$HOST:$cport,INTERNAL://$HOST:$INTERNAL_PORT,SSL://$HOST:$SSL_PORT
advertised.listeners=SASL_SSL://$HOST:$port,INTERNAL://$HOST:$INTERNAL_PORT,SSL://$HOST:$SSL_PORT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,INTERNAL:PLAINTEXT,SASL_SSL:SASL_SSL,SSL:SSL
inter.broker.listener.name=INTERNAL
ssl.keystore.type=PKCS12
ssl.keystore.location=$SECRETS_DIR/server.p12
ssl.keystore.password=$store_pass
ssl.key.password=$store_pass
ssl.truststore.type=PKCS12
ssl.truststore.location=$SECRETS_DIR/truststore.p12
ssl.truststore.password=$store_pass
# The SSL listener authenticates clients by certificate; SASL_SSL by SASL.
listener.name.ssl.ssl.client.auth=required
sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512,OAUTHBEARER
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_$user="$pass";
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
# Kafka's built-in validator of unsecured JWTs (alg "none"): enough to prove the client side. A
# managed cluster validates signed tokens from its identity provider instead.
listener.name.sasl_ssl.oauthbearer.sasl.jaas.config=org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required unsecuredLoginStringClaim_sub="$user";
# A wrong password is answered at once, not after the default 1 s delay per attempt.
sasl.login.retry.backoff.ms=100
EOT
    else
      cat <<EOT
listeners=PLAINTEXT://$HOST:$port,CONTROLLER://$HOST:$cport
advertised.listeners=PLAINTEXT://$HOST:$port
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
EOT
    fi
    cat <<EOT

# Internal topics and defaults follow the node count: with the 3-broker defaults on a single node,
# consumer groups hang on "group coordinator is not available".
offsets.topic.replication.factor=$rf
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$min_isr
transaction.state.log.num.partitions=1
default.replication.factor=$rf
min.insync.replicas=$min_isr
num.partitions=1
# Otherwise every first group join waits 3 s.
group.initial.rebalance.delay.ms=0
# After a crash (kill -9) the controller refuses the restarted broker's registration until the
# old session expires: 9 s by default, which made restarts take ~16 s.
broker.session.timeout.ms=3000
broker.heartbeat.interval.ms=500
# Topics must be created explicitly, so a typo in a topic name fails loudly.
auto.create.topics.enable=false
EOT
  } >"$(props_file "$node")"

  cat >"$dir/log4j.properties" <<EOT
log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.RollingFileAppender
log4j.appender.file.File=$(log_file "$node")
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
EOT
}

format_storage() { # format_storage <node>
  local node=$1 dir
  dir=$(node_dir "$node")
  [[ -f $dir/data/meta.properties ]] && return
  if [[ ! -s $CLUSTER_ID_FILE ]]; then
    "$JAVA" -cp "$LIBS/*" -Dlog4j.configuration="file:$TOOLS_LOG4J" \
      kafka.tools.StorageTool random-uuid >"$CLUSTER_ID_FILE.tmp"
    mv "$CLUSTER_ID_FILE.tmp" "$CLUSTER_ID_FILE"
  fi
  local -a scram=()
  if [[ $SASL_SSL == 1 ]]; then
    local user pass
    user=$(secret KAFKA_SASL_USERNAME)
    pass=$(secret KAFKA_SASL_PASSWORD)
    scram=(--add-scram "SCRAM-SHA-256=[name=$user,password=$pass]" --add-scram "SCRAM-SHA-512=[name=$user,password=$pass]")
  fi
  log "formatting $dir/data (cluster id $(<"$CLUSTER_ID_FILE"))"
  "$JAVA" -cp "$LIBS/*" -Dlog4j.configuration="file:$TOOLS_LOG4J" \
    kafka.tools.StorageTool format -t "$(<"$CLUSTER_ID_FILE")" -c "$(props_file "$node")" --ignore-formatted \
    "${scram[@]}" >/dev/null
}

# ---------------------------------------------------------------- commands

launch() { # launch <node>; prints the pid
  local node=$1 dir pid
  dir=$(node_dir "$node")
  : >"$(out_file "$node")"
  local -a launcher=(nohup)
  # setsid: own session, so Ctrl-C in the calling terminal does not reach the broker.
  command -v setsid >/dev/null 2>&1 && launcher+=(setsid)
  # shellcheck disable=SC2086 # HEAP_OPTS is deliberately word-split
  "${launcher[@]}" "$JAVA" $HEAP_OPTS -Djava.awt.headless=true \
    -Dlog4j.configuration="file:$dir/log4j.properties" \
    -cp "$LIBS/*" kafka.Kafka "$(props_file "$node")" \
    </dev/null >>"$(out_file "$node")" 2>&1 8>&- 9>&- &
  pid=$!
  echo "$pid" >"$(pid_file "$node")"
  echo "$pid"
}

start() {
  command -v "$JAVAC" >/dev/null 2>&1 || die "a JDK 17+ (with javac) is needed (install it or set JAVA_HOME)"
  ensure_fetched
  ensure_probe
  lock_run
  write_tools_log4j
  local started node pid port running=() launched=() watched=()
  started=$(now_ms)

  for node in $(all_nodes); do
    if pid=$(running_pid "$node"); then
      grep -q "^listeners=[A-Z_]*://$HOST:$(node_port "$node")," "$(props_file "$node")" ||
        die "node $node (pid $pid) is running with other ports ($(grep '^listeners=' "$(props_file "$node")")); stop it first"
      running+=("$node")
      watched+=("$pid")
    elif [[ -f $(pid_file "$node") ]]; then
      log "removing stale pid file of node $node (pid $(read_pid "$node") is gone)"
      rm -f "$(pid_file "$node")"
    fi
  done

  if ((${#running[@]} == NODES)); then
    if probe "$(bootstrap)" 5000 "$NODES" "${watched[@]}" >/dev/null 2>&1; then
      log "already running (pids ${watched[*]}) on $HOST:$(client_ports)"
      return
    fi
    log "running (pids ${watched[*]}) but not all answering on $HOST:$(client_ports) yet; waiting"
    wait_ready "$(bootstrap)" "$started" "${watched[@]}"
    return
  fi

  if ((NODES == 1 && SASL_SSL == 0)) && port_open "$PORT"; then
    if probe "$(bootstrap)" 5000 1 >/dev/null 2>&1; then
      log "a Kafka broker not managed by this script already answers on $HOST:$PORT; using it"
      return
    fi
    die "port $PORT is in use by something that is not a Kafka broker (set KAFKA_PORT to use another port)"
  fi
  for node in $(all_nodes); do
    [[ " ${running[*]} " == *" $node "* ]] && continue
    local -a ports=("$(node_port "$node")" "$(node_controller_port "$node")")
    [[ $SASL_SSL == 1 ]] && ports+=("$INTERNAL_PORT" "$SSL_PORT")
    for port in "${ports[@]}"; do
      port_open "$port" && die "port $port (node $node) is already in use (set KAFKA_PORT / KAFKA_CONTROLLER_PORT)"
    done
  done

  [[ $SASL_SSL == 1 ]] && write_secrets
  for node in $(all_nodes); do
    [[ " ${running[*]} " == *" $node "* ]] && continue
    write_config "$node"
    format_storage "$node"
  done
  for node in $(all_nodes); do
    [[ " ${running[*]} " == *" $node "* ]] && continue
    pid=$(launch "$node")
    launched+=("$node")
    watched+=("$pid")
  done
  log "started node(s) ${launched[*]} (pids ${watched[*]}), waiting up to ${START_TIMEOUT}s for $NODES node(s) to answer on $HOST:$(client_ports)"
  # Asked through the new nodes: after a kill, the others still list the dead node until its session expires.
  wait_ready "$(bootstrap "${launched[@]}")" "$started" "${watched[@]}"
}

wait_ready() { # wait_ready <bootstrap> <startedMs> <pids...>
  local servers=$1 started=$2 rc=0 detail node
  shift 2
  detail=$(probe "$servers" $((START_TIMEOUT * 1000)) "$NODES" "$@" 2>&1) || rc=$?
  case $rc in
    0)
      echo "kafka $KAFKA_VERSION ready on $HOST:$(client_ports) in $(fmt_secs $(($(now_ms) - started))) (pids $*, $detail)"
      ;;
    2)
      for node in $(all_nodes); do
        running_pid "$node" >/dev/null && continue
        rm -f "$(pid_file "$node")"
        show_log_tail "$node"
      done
      die "broker process exited during startup ($detail)"
      ;;
    *)
      for node in $(all_nodes); do show_log_tail "$node"; done
      log "$detail"
      log "not ready after ${START_TIMEOUT}s; stopping"
      for node in $(all_nodes); do stop_node "$node"; done
      die "kafka did not become ready within ${START_TIMEOUT}s (KAFKA_START_TIMEOUT)"
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

stop_pid() { # stop_pid <pid> <node>
  local pid=$1
  kill -TERM "$pid" 2>/dev/null || true
  if ! wait_gone "$pid" "$STOP_TIMEOUT"; then
    log "pid $pid still alive after ${STOP_TIMEOUT}s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    wait_gone "$pid" 5 || log "warning: pid $pid survived SIGKILL"
  fi
  rm -f "$(pid_file "$2")"
}

stop_node() {
  local pid
  if pid=$(running_pid "$1"); then
    log "stopping node $1 (pid $pid)"
    stop_pid "$pid" "$1"
  else
    rm -f "$(pid_file "$1")"
  fi
}

stop() {
  lock_run
  local node pid pids=() any=0
  # In parallel: a broker that loses its quorum peers first waits for them during controlled shutdown.
  for node in $(all_nodes); do
    if pid=$(running_pid "$node"); then
      any=1
      pids+=("$pid")
      kill -TERM "$pid" 2>/dev/null || true
    fi
  done
  if ((any == 0)); then
    for node in $(all_nodes); do rm -f "$(pid_file "$node")"; done
    log "not running"
    return
  fi
  log "stopping pid(s) ${pids[*]}"
  for node in $(all_nodes); do stop_node "$node"; done
  log "stopped"
}

kill_node() { # SIGKILL, no clean shutdown: a crash, for fault tests
  local node=${1:-} pid
  [[ $node =~ ^[1-9]$ ]] && ((node <= NODES)) || die "usage: kill <node 1..$NODES>"
  lock_run
  pid=$(running_pid "$node") || die "node $node is not running"
  kill -KILL "$pid"
  wait_gone "$pid" 5 || die "pid $pid survived SIGKILL"
  rm -f "$(pid_file "$node")"
  log "killed node $node (pid $pid)"
}

node_pid() {
  local node=${1:-}
  [[ $node =~ ^[1-9]$ ]] && ((node <= NODES)) || die "usage: pid <node 1..$NODES>"
  running_pid "$node"
}

status() {
  local node pid down=0
  for node in $(all_nodes); do
    if pid=$(running_pid "$node"); then
      echo "kafka $KAFKA_VERSION node $node running (pid $pid) on $HOST:$(node_port "$node")"
    else
      echo "kafka $KAFKA_VERSION node $node not running (port $(node_port "$node"))"
      down=1
    fi
  done
  ((down == 0)) || return 3
}

logs() {
  local node=${KAFKA_NODE:-1}
  [[ -f $(log_file "$node") ]] || die "no broker log yet ($(log_file "$node"))"
  if (($#)); then tail "$@" "$(log_file "$node")"; else tail -n 100 "$(log_file "$node")"; fi
}

reset() {
  stop
  local node
  for node in $(all_nodes); do rm -rf "$(node_dir "$node")/data"; done
  rm -rf "$SECRETS_DIR"
  rm -f "$CLUSTER_ID_FILE"
  log "wiped the data of $NODES node(s) in $RUN_DIR"
}

usage() {
  sed -n '2,17s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
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
  kill) kill_node "$@" ;;
  pid) node_pid "$@" ;;
  *) usage ;;
esac
