#!/usr/bin/env bash
# Make sure a Redis server answers on loopback for the Redis-backed tests.
# Uses one already running at REVIEWBOT_TEST_REDIS_URL's port, or installs and starts one.
set -euo pipefail
port="${REVIEWBOT_TEST_REDIS_PORT:-6399}"

ping() {
  if command -v redis-cli >/dev/null 2>&1; then
    redis-cli -p "$port" ping >/dev/null 2>&1
  else
    (exec 3<>"/dev/tcp/127.0.0.1/$port" && printf 'PING\r\n' >&3 && read -r -t 2 reply <&3 \
      && [[ "$reply" == +PONG* ]]) 2>/dev/null
  fi
}

if ping; then
  exit 0
fi
if ! command -v redis-server >/dev/null 2>&1; then
  echo "ensure-redis: installing redis-server from Debian's packages" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq redis-server >/dev/null
fi
dir="${TMPDIR:-/tmp}/reviewbot-test-redis-$port"
mkdir -p "$dir"
redis-server --port "$port" --bind 127.0.0.1 --daemonize yes --save "" --appendonly no \
  --dir "$dir" --logfile "$dir/redis.log" --pidfile "$dir/redis.pid"
for _ in $(seq 1 50); do
  if ping; then
    echo "ensure-redis: redis-server running on 127.0.0.1:$port" >&2
    exit 0
  fi
  sleep 0.1
done
echo "ensure-redis: redis-server did not start on port $port" >&2
exit 1
