# Shared by the bench scripts (sourced, not run).

# Stops a process this script started, by its PID: SIGTERM, up to 5 s for it to
# exit, then SIGKILL; reaps it. Harmless if it has already exited.
stop_pid() {
    local pid=$1
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}
