#!/usr/bin/env bash
# A single-node Apache Kafka broker (KRaft: broker + controller in one JVM) for development, tests,
# benchmarks and CI. The jars come from Maven Central through `mvn` (see pom.xml); nothing else is
# downloaded. Usage:
#   dev/kafka/kafka.sh fetch     resolve the broker jars into the cache folder (idempotent)
#   dev/kafka/kafka.sh start     fetch, format fresh KRaft storage, start, wait until it accepts clients
#   dev/kafka/kafka.sh stop      stop the broker started by `start` (SIGTERM, then SIGKILL after 30 s)
#   dev/kafka/kafka.sh restart   stop, then start again on the same storage (data kept)
#   dev/kafka/kafka.sh status    exit 0 when the broker is running and reachable
#   dev/kafka/kafka.sh run       like start, in the foreground
# Settings (environment):
#   KAFKA_PORT        client port on 127.0.0.1 (default 9092); the controller uses KAFKA_PORT+1
#   KAFKA_CACHE       where jars live (default ~/.cache/connector-host/kafka)
#   KAFKA_DATA        storage, logs and pid file (default $KAFKA_CACHE/run-$KAFKA_PORT)
#   KAFKA_HEAP_OPTS   JVM heap (default -Xms256m -Xmx1g)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
port=${KAFKA_PORT:-9092}
controller_port=$((port + 1))
cache=${KAFKA_CACHE:-$HOME/.cache/connector-host/kafka}
kafka_version=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$here/pom.xml")
libs="$cache/libs-$kafka_version"
data=${KAFKA_DATA:-$cache/run-$port}
pidfile="$data/broker.pid"

log() { printf 'kafka.sh: %s\n' "$*" >&2; }

fetch() {
  if [ -f "$libs/.complete" ]; then return 0; fi
  log "resolving org.apache.kafka:kafka_2.13:$kafka_version from Maven Central into $libs"
  rm -rf "$libs"
  mvn -q -B -f "$here/pom.xml" dependency:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$libs" >&2
  touch "$libs/.complete"
}

java_cmd() {
  # shellcheck disable=SC2086
  exec_args=(java ${KAFKA_HEAP_OPTS:--Xms256m -Xmx1g} -XX:+UseG1GC
    -Dlog4j2.configurationFile="$here/log4j2.properties" -Dkafka.logs.dir="$data/logs"
    -cp "$libs/*" "$@")
  "${exec_args[@]}"
}

write_config() {
  mkdir -p "$data/logs"
  cat > "$data/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$controller_port
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller_port
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$data/kraft-logs
num.partitions=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=8
group.initial.rebalance.delay.ms=0
message.max.bytes=4194304
PROPS
}

is_up() {
  # The client port accepts TCP connections.
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null
}

running_pid() {
  [ -f "$pidfile" ] || return 1
  local pid; pid=$(cat "$pidfile")
  kill -0 "$pid" 2>/dev/null && echo "$pid"
}

format() {
  rm -rf "$data/kraft-logs"
  local cluster_id; cluster_id=$(java_cmd kafka.tools.StorageTool random-uuid)
  java_cmd kafka.tools.StorageTool format -t "$cluster_id" -c "$data/server.properties" >/dev/null
}

start() {
  if running_pid >/dev/null; then log "already running on 127.0.0.1:$port"; return 0; fi
  if is_up; then log "port $port is taken by another process"; return 1; fi
  fetch
  if [ "${1:-}" != keep ] || [ ! -d "$data/kraft-logs" ]; then
    write_config
    format
  fi
  nohup bash -c "$(declare -f java_cmd); here='$here'; data='$data'; libs='$libs'; \
      java_cmd kafka.Kafka '$data/server.properties'" >"$data/logs/stdout.log" 2>&1 &
  echo $! > "$pidfile"
  local deadline=$((SECONDS + ${KAFKA_START_TIMEOUT:-90}))
  until is_up; do
    if ! running_pid >/dev/null; then log "broker exited; see $data/logs"; tail -20 "$data/logs/stdout.log" >&2; return 1; fi
    if [ $SECONDS -ge $deadline ]; then log "broker did not open port $port in time"; stop; return 1; fi
    sleep 0.5
  done
  log "broker up on 127.0.0.1:$port (pid $(cat "$pidfile"), data $data)"
}

stop() {
  local pid
  if ! pid=$(running_pid); then log "not running"; rm -f "$pidfile"; return 0; fi
  # The broker JVM is a child of the nohup'd bash; signal it too, and wait for both to be gone
  # (a JVM still flushing its logs would race a caller that deletes the data folder next).
  local pids; pids="$pid $(pgrep -P "$pid" 2>/dev/null | tr '\n' ' ')"
  pkill -TERM -P "$pid" 2>/dev/null || true
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + 30))
  while for p in $pids; do kill -0 "$p" 2>/dev/null && break; false; done; do
    # shellcheck disable=SC2086
    if [ $SECONDS -ge $deadline ]; then kill -KILL $pids 2>/dev/null || true; sleep 0.5; break; fi
    sleep 0.3
  done
  rm -f "$pidfile"
  log "stopped"
}

case "${1:-}" in
  fetch) fetch ;;
  start) start ;;
  stop) stop ;;
  restart) stop; start keep ;;
  status) running_pid >/dev/null && is_up ;;
  run) fetch; write_config; format; java_cmd kafka.Kafka "$data/server.properties" ;;
  *) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
