# shellcheck shell=bash disable=SC2154 # dir and die are the caller's
# Process handling shared by hack/control-plane.sh and hack/local-cluster.sh. Sourced, not run.
# The caller defines `die MESSAGE` and `usage`; `dir` (the state directory: pids/NAME.pid and
# logs/NAME.log live there) comes from parse_command_and_dir.
#
# The rule both scripts keep: a pid file per process, and a recorded pid is trusted only while
# /proc/PID/cmdline still names the component (pids get reused after a reboot or a crash, and
# `down` must never signal some unrelated process).

# The command and the `--dir DIR` option both scripts take: sets `cmd`, and `dir` (DEFAULT
# unless --dir is given; made absolute, since pid and kubeconfig paths must survive a cd).
# Calls the script's own `usage` and `die`.
# shellcheck disable=SC2034 # cmd and dir are the caller's
parse_command_and_dir() { # default args...
  local default="$1"
  shift
  cmd="${1:-}"
  [ "$#" -eq 0 ] || shift
  dir="$default"
  while [ "$#" -gt 0 ]; do
    case "$1" in
      --dir) [ "$#" -ge 2 ] || die "--dir needs a value"; dir="$2"; shift 2 ;;
      --dir=*) dir="${1#--dir=}"; shift ;;
      -h | --help) usage; exit 0 ;;
      *) usage; die "unknown argument '$1'" ;;
    esac
  done
  [ -n "$dir" ] || die "empty state directory"
  case "$dir" in /*) ;; *) dir="$PWD/$dir" ;; esac
}

pid_of() { cat "$dir/pids/$1.pid" 2>/dev/null || true; }

alive() { # name
  local pid
  pid="$(pid_of "$1")"
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "/$1 "
}

start_process() { # name binary args...
  local name="$1" binary="$2"; shift 2
  mkdir -p "$dir/logs" "$dir/pids"
  # A restarted component gets a fresh log (the previous one kept as .prev), so that waiting
  # for a line in it never matches what the dead process wrote.
  [ ! -f "$dir/logs/$name.log" ] || mv -f "$dir/logs/$name.log" "$dir/logs/$name.log.prev"
  # setsid: the processes outlive the script and a Ctrl-C in the terminal that ran `up`; they
  # end with `down`. No fork happens here (a background job is no group leader), so $! is the
  # component's own pid. Fds 8 and 9 hold the scripts' locks: a component that inherited one
  # would keep the lock while it runs, and the next `up` would wait forever.
  setsid "$binary" "$@" >"$dir/logs/$name.log" 2>&1 </dev/null 8>&- 9>&- &
  local pid=$! _
  echo "$pid" >"$dir/pids/$name.pid"
  # Until the exec, the child is still a copy of this bash; `alive` (and so wait_for) would
  # take it for a dead component.
  for _ in $(seq 1 100); do
    alive "$name" && return 0
    [ -d "/proc/$pid" ] || break
    sleep 0.05
  done
  tail -n 30 "$dir/logs/$name.log" >&2 || true
  die "$name did not start (log: $dir/logs/$name.log)"
}

# Polls CMD every 0.2 s until it succeeds; fails early, with its log, when the component (if
# one is named) died.
wait_for() { # component-or-empty timeout-seconds description cmd...
  local name="$1" timeout="$2" what="$3"; shift 3
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if [ -n "$name" ] && ! alive "$name"; then
      tail -n 30 "$dir/logs/$name.log" >&2 || true
      die "$name exited while waiting for $what (log: $dir/logs/$name.log)"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      [ -z "$name" ] || tail -n 30 "$dir/logs/$name.log" >&2 || true
      die "timed out after ${timeout}s waiting for $what${name:+ (log: $dir/logs/$name.log)}"
    fi
    sleep 0.2
  done
}

# A free TCP port on loopback, below the kernel's ephemeral range (32768+) so that outgoing
# connections cannot take it between now and the component's bind.
taken_ports=" "
free_port() { # sets $port
  local _
  for _ in $(seq 1 200); do
    port=$((10000 + (RANDOM * 32768 + RANDOM) % 22000))
    case "$taken_ports" in *" $port "*) continue ;; esac
    # A refused connection means nobody listens there.
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      taken_ports+="$port "
      return 0
    fi
  done
  die "no free port found"
}
