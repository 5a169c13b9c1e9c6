# What the drills share, sourced by them (not run): wrk, the release build,
# a throwaway PostgreSQL cluster under /tmp (initdb and pg_ctl, as the
# `postgres` user when run as root) and `lectern serve` started on it with
# the demo content. Expects `root` (the repository) to be set.

say() { printf '%s\n' "$*" >&2; }

# The drills' Python clients import lectern_client (requests, forms, logins).
export PYTHONPATH=$root/benches/drills${PYTHONPATH:+:$PYTHONPATH}

need_wrk() {
  command -v wrk >/dev/null 2>&1 || {
    say "installing wrk"
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
  }
}

build_release() {
  say "building the release binary"
  cargo build --release --locked --manifest-path "$root/Cargo.toml" --bin lectern >&2
  bin=$root/target/release/lectern
}

as_postgres() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# Sets `work` (removed at exit, with the cluster stopped and `pid`, the
# serving Lectern, ended) and `pg_bin`.
make_workdir() {
  pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  [ -x "$pg_bin/initdb" ] || pg_bin=$(dirname "$(command -v initdb)")
  work=$(mktemp -d /tmp/lectern-drill.XXXXXX)
  chmod 755 "$work"
  mkdir -p "$work/pg"
  [ "$(id -u)" -ne 0 ] || chown postgres: "$work/pg"
  pid=
  trap cleanup EXIT
}

cleanup() {
  [ -z "$pid" ] || { kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }
  as_postgres "$pg_bin/pg_ctl" -D "$work/pg/data" -m fast stop >/dev/null 2>&1 || true
  rm -rf "$work"
}

pg() { as_postgres "$pg_bin/pg_ctl" -D "$work/pg/data" -l "$work/pg/postgres.log" -w "$@" >/dev/null; }
pg_start() { pg -o "-c listen_addresses='' -k $work/pg" start; }
psql_lectern() { as_postgres "$pg_bin/psql" -h "$work/pg" -U lectern -d lectern -Atq "$@"; }

# A new cluster with a `lectern` database, and Lectern's settings for it in
# the environment (production, a data directory in `work`, a free port).
start_database() {
  say "starting a throwaway PostgreSQL in $work/pg"
  as_postgres "$pg_bin/initdb" -D "$work/pg/data" -U lectern -A trust >/dev/null
  pg_start
  as_postgres "$pg_bin/createdb" -h "$work/pg" -U lectern lectern
  export DATABASE_URL="host=$work/pg user=lectern dbname=lectern"
  export LECTERN_ENV=production
  export LECTERN__SERVER__DATA_DIR=$work/data
  export LECTERN__SERVER__BIND=127.0.0.1:0
  export LECTERN__SERVER__PUBLIC_URL=https://lectern.example
  export LECTERN__LOG__TERMINAL=false
  export LECTERN__BACKUP__STORAGE=dir
}

# Starts `lectern serve ARGS…` in `work`, its output in serve.out and
# serve.err (appended to), and waits until it listens: sets `pid` and `url`.
serve() {
  local before
  before=$(grep -c "Lectern listening on" "$work/serve.out" 2>/dev/null || true)
  (cd "$work" && exec "$bin" serve "$@" >>"$work/serve.out" 2>>"$work/serve.err") &
  pid=$!
  for _ in $(seq 600); do
    [ "$(grep -c "Lectern listening on" "$work/serve.out" 2>/dev/null || true)" -gt "${before:-0}" ] && break
    kill -0 "$pid" 2>/dev/null || { cat "$work/serve.err" >&2; exit 1; }
    sleep 0.05
  done
  url=$(sed -n 's/^Lectern listening on //p' "$work/serve.out" | tail -1)
}

# "REQUESTS NON2XX SOCKET_ERRORS" from a wrk report.
wrk_totals() {
  python3 - "$1" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
requests = int(re.search(r"(\d+) requests in", text).group(1))
non2xx = int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", text)) else 0
errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", text))
print(requests, non2xx, errors)
PY
}

# Lectern's resident memory in KiB (`pid`: the serving Lectern).
rss() { awk '/^VmRSS/ { print $2 }' "/proc/$pid/status"; }

# A wrk script that counts answers by status (a 503 without Retry-After
# apart) and prints "status STATUS COUNT" lines at the end, to be followed
# by the drill's own `request` function.
statuses_lua() {
  cat <<'LUA'
local threads = {}
function setup(thread) table.insert(threads, thread) end
counts = {}
function response(status, headers, body)
  local key = tostring(status)
  if status == 503 and headers["retry-after"] == nil and headers["Retry-After"] == nil then
    key = "503-without-Retry-After"
  end
  counts[key] = (counts[key] or 0) + 1
end
function done(summary, latency, requests)
  local total = {}
  for _, thread in ipairs(threads) do
    for key, count in pairs(thread:get("counts")) do total[key] = (total[key] or 0) + count end
  end
  for key, count in pairs(total) do io.write(string.format("status %s %d\n", key, count)) end
end
LUA
}
