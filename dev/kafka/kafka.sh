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
#   KAFKA_SECURE=1    start it secured instead (`start-secure` is the same as KAFKA_SECURE=1 start):
#                     SASL_SSL with SCRAM-SHA-512 on KAFKA_PORT, mutual TLS on KAFKA_PORT+2, the
#                     controller on KAFKA_PORT+1 (mutual TLS), the standard authorizer, one principal
#                     per component (admin, worker, publisher, scheduler, api, requester) with the
#                     ACLs of hostspec.transport.acls and the host's topics created. A CA, certificates,
#                     keys and passwords are generated into $KAFKA_DATA/secure, with ready-made client
#                     settings per principal: $KAFKA_DATA/secure/<principal>.{scram,mtls}.env
#   KAFKA_PYTHON      the Python that applies the ACLs (default python3; needs kafka-python)
#   CONNECTOR_HOST_TOPIC_PREFIX  topic prefix the ACLs are written for (secured mode; default none)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
port=${KAFKA_PORT:-9092}
controller_port=$((port + 1))
cache=${KAFKA_CACHE:-$HOME/.cache/connector-host/kafka}
kafka_version=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$here/pom.xml")
libs="$cache/libs-$kafka_version"
data=${KAFKA_DATA:-$cache/run-$port}
pidfile="$data/broker.pid"
[ "${1:-}" = start-secure ] && KAFKA_SECURE=1
secure=${KAFKA_SECURE:-0}
tls_port=$((port + 2))
secrets="$data/secure"
PRINCIPALS="admin worker publisher scheduler api requester"   # SCRAM users and client certificates

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
  if [ "$secure" = 1 ]; then write_secure_config; fi
}

# -- secured mode: certificates, SCRAM users, listeners, authorizer -------------------------------
# Every secret is generated here, into $secrets (mode 700; never in the repository), once: a
# restart keeps them. Client keys are encrypted with a per-principal key password.
new_secret() { openssl rand -hex 18; }

issue_cert() {  # issue_cert NAME: an EC key and a certificate signed by the CA (SAN 127.0.0.1, localhost)
  local name=$1
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=$name" \
      -keyout "$secrets/$name.plain.key" -out "$secrets/$name.csr" 2>/dev/null
  openssl x509 -req -in "$secrets/$name.csr" -CA "$secrets/ca.pem" -CAkey "$secrets/ca.key" -CAcreateserial \
      -days 30 -out "$secrets/$name.pem" 2>/dev/null -extfile <(printf '%s\n' \
      'subjectAltName=IP:127.0.0.1,DNS:localhost' 'extendedKeyUsage=serverAuth,clientAuth' \
      'basicConstraints=CA:FALSE')
  rm -f "$secrets/$name.csr"
}

make_secrets() {
  [ -f "$secrets/.complete" ] && return 0
  log "generating a CA, certificates and SCRAM passwords in $secrets"
  rm -rf "$secrets"; mkdir -p "$secrets"; chmod 700 "$secrets"
  (
    umask 077
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
        -subj "/CN=connector-host dev CA" -keyout "$secrets/ca.key" -out "$secrets/ca.pem" 2>/dev/null \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
    issue_cert broker          # the broker's server certificate, and its client certificate to itself
    cat "$secrets/broker.plain.key" "$secrets/broker.pem" > "$secrets/broker.keystore.pem"
    for name in $PRINCIPALS; do
      issue_cert "$name"
      new_secret > "$secrets/$name.password"      # SCRAM password
      new_secret > "$secrets/$name.keypass"       # the password of its encrypted private key
      openssl pkcs8 -topk8 -v2 aes-256-cbc -in "$secrets/$name.plain.key" -out "$secrets/$name.key" \
          -passout "file:$secrets/$name.keypass"
      rm -f "$secrets/$name.plain.key"
      printf '%s\n' "KAFKA_BOOTSTRAP=127.0.0.1:$port" KAFKA_SECURITY_PROTOCOL=SASL_SSL \
          KAFKA_SASL_MECHANISM=SCRAM-SHA-512 "KAFKA_SASL_USERNAME=$name" \
          "KAFKA_SASL_PASSWORD_FILE=$secrets/$name.password" "KAFKA_SSL_CAFILE=$secrets/ca.pem" \
          > "$secrets/$name.scram.env"
      printf '%s\n' "KAFKA_BOOTSTRAP=127.0.0.1:$tls_port" KAFKA_SECURITY_PROTOCOL=SSL \
          "KAFKA_SSL_CAFILE=$secrets/ca.pem" "KAFKA_SSL_CERTFILE=$secrets/$name.pem" \
          "KAFKA_SSL_KEYFILE=$secrets/$name.key" "KAFKA_SSL_KEY_PASSWORD_FILE=$secrets/$name.keypass" \
          > "$secrets/$name.mtls.env"
    done
    rm -f "$secrets/broker.plain.key" "$secrets"/*.srl
  )
  touch "$secrets/.complete"
}

write_secure_config() {
  # The listeners replace the plain ones: SASL_SSL (SCRAM) for clients, SSL with client certificates
  # for clients and for the broker itself, the controller on mutual TLS. A certificate's principal
  # is its CN (CN=worker is User:worker, the SCRAM user of the same name).
  make_secrets
  sed -i '/^listeners=/d; /^advertised.listeners=/d; /^inter.broker.listener.name=/d; /^listener.security.protocol.map=/d' \
      "$data/server.properties"
  cat >> "$data/server.properties" <<PROPS
listeners=SASL_SSL://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller_port,SSL://127.0.0.1:$tls_port
advertised.listeners=SASL_SSL://127.0.0.1:$port,SSL://127.0.0.1:$tls_port
listener.security.protocol.map=SASL_SSL:SASL_SSL,SSL:SSL,CONTROLLER:SSL
inter.broker.listener.name=SSL
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
ssl.keystore.type=PEM
ssl.keystore.location=$secrets/broker.keystore.pem
ssl.truststore.type=PEM
ssl.truststore.location=$secrets/ca.pem
ssl.client.auth=required
listener.name.sasl_ssl.ssl.client.auth=none
ssl.principal.mapping.rules=RULE:^CN=([A-Za-z0-9._-]+)(,.*)?\$/\$1/,DEFAULT
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=User:broker;User:admin
PROPS
}

scram_args() {  # the SCRAM users, created with the storage (KRaft)
  local name
  for name in $PRINCIPALS; do
    printf -- '--add-scram\nSCRAM-SHA-512=[name=%s,password=%s]\n' "$name" "$(cat "$secrets/$name.password")"
  done
}

provision() {  # the host's topics and every component's ACLs, as the admin (a super user)
  local repo; repo=$(cd "$here/../.." && pwd)
  if ! (set -a; . "$secrets/admin.mtls.env"; set +a
        PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$repo" "${KAFKA_PYTHON:-python3}" -m hostspec.transport.acls apply >&2); then
    log "topics and ACLs not provisioned; see above"; return 1
  fi
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
  local extra=()
  if [ "$secure" = 1 ]; then mapfile -t extra < <(scram_args); fi
  java_cmd kafka.tools.StorageTool format -t "$cluster_id" -c "$data/server.properties" "${extra[@]}" >/dev/null
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
  if [ "$secure" = 1 ]; then
    provision || { stop; return 1; }
    log "secured broker up: SASL_SSL (SCRAM-SHA-512) on 127.0.0.1:$port, mutual TLS on 127.0.0.1:$tls_port" \
        "(pid $(cat "$pidfile"), client settings in $secrets/<principal>.{scram,mtls}.env)"
    return 0
  fi
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
  start|start-secure) start ;;
  stop) stop ;;
  restart) stop; start keep ;;
  status) running_pid >/dev/null && is_up ;;
  run) fetch; write_config; format; java_cmd kafka.Kafka "$data/server.properties" ;;
  *) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
