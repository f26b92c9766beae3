#!/usr/bin/env bash
# Runs every process of a Procfile (default: ./Procfile; the `release` line is left out) and keeps them as one:
# Ctrl-C or SIGTERM stops them all (SIGTERM to each main process, then SIGKILL to what is left of its session after
# KP_STOP_TIMEOUT seconds, default 30) and exits 0; when one of them ends, the others are stopped and this exits non-zero. Each runs in its own session so
# that a stop reaches its children too. Used by scripts/serve.sh; a new process is a new line in the Procfile.
set -uo pipefail
procfile=${1:-Procfile}
stop_timeout=${KP_STOP_TIMEOUT:-30}

names=()
pids=()
while IFS= read -r line || [ -n "$line" ]; do
    [[ "$line" =~ ^[[:space:]]*(#|$) ]] && continue
    name=${line%%:*}
    command=${line#*:}
    [ "$name" = release ] && continue
    echo "supervise: starting $name:$command"
    setsid bash -c "exec $command" &
    names+=("$name")
    pids+=($!)
done <"$procfile"
[ ${#pids[@]} -gt 0 ] || { echo "supervise: no processes in $procfile" >&2; exit 2; }

alive() { kill -0 "$1" 2>/dev/null; }

stop_all() {
    for pid in "${pids[@]}"; do
        alive "$pid" && kill -TERM "$pid" 2>/dev/null  # the main process stops its own workers
    done
    local deadline=$((SECONDS + stop_timeout))
    for i in "${!pids[@]}"; do
        while alive "${pids[$i]}" && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
        if alive "${pids[$i]}"; then
            echo "supervise: ${names[$i]} did not stop within ${stop_timeout} s; killing it" >&2
            kill -KILL -- "-${pids[$i]}" 2>/dev/null
        fi
    done
    wait 2>/dev/null
    # what a process left behind in its session (a worker's children) goes too
    for pid in "${pids[@]}"; do kill -KILL -- "-$pid" 2>/dev/null; done
    return 0
}

on_signal() {
    trap '' INT TERM  # a second Ctrl-C while stopping must not leave the others running
    echo "supervise: stopping ${names[*]}…"
    stop_all
    echo "supervise: stopped"
    exit 0
}
trap on_signal INT TERM

wait -n "${pids[@]}"
status=$?
for i in "${!pids[@]}"; do
    if ! alive "${pids[$i]}"; then
        echo "supervise: ${names[$i]} ended (exit status $status); stopping the others" >&2
        break
    fi
done
trap '' INT TERM  # stopping goes on whatever signal comes now
stop_all
exit $((status == 0 ? 1 : status))
