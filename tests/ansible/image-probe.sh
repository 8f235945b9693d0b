#!/bin/sh
# Runs inside the booted test image (installed by test-image.sh, never by Ansible): waits for peergrid-edge to be
# active (Type=notify: only after READY=1), freezes it so it stops sending WATCHDOG=1, waits for systemd to kill
# and restart it, writes what it saw to /var/lib/peergrid-probe/result and powers the container off.
out=/var/lib/peergrid-probe/result
mkdir -p /var/lib/peergrid-probe
say() { echo "$*" | tee -a "$out"; }
prop() { systemctl show -p "$1" --value peergrid-edge.service; }
wait_active() {  # $1: seconds
    i=0
    while [ "$i" -lt "$1" ]; do
        [ "$(prop ActiveState)" = active ] && [ "$(prop SubState)" = running ] && return 0
        sleep 1; i=$((i + 1))
    done
    return 1
}
: >"$out"
if wait_active "${PROBE_READY_TIMEOUT:-600}"; then
    took=$(( ($(prop ActiveEnterTimestampMonotonic) - $(prop ExecMainStartTimestampMonotonic)) / 1000000 ))
    say "READY ${took}s after its start: $(prop StatusText)"
else
    say "NOT READY: $(prop ActiveState)/$(prop SubState) result=$(prop Result) restarts=$(prop NRestarts)"
    journalctl -b -u peergrid-edge.service -u peergrid-edge-keygen.service --no-pager | tail -40 >>"$out"
    systemctl poweroff; exit 0
fi
[ -s /var/lib/peergrid/edge/keys/node.key ] && say "KEY made on the device"
pid=$(prop MainPID)
say "freezing main pid $pid"
kill -STOP "$pid"
i=0
while [ "$i" -lt "${PROBE_RESTART_TIMEOUT:-600}" ]; do
    [ "$(prop NRestarts)" -ge 1 ] && [ "$(prop MainPID)" != "$pid" ] && break
    sleep 1; i=$((i + 1))
done
if [ "$(prop NRestarts)" -ge 1 ] && wait_active "${PROBE_READY_TIMEOUT:-600}"; then
    say "RESTARTED after watchdog: restarts=$(prop NRestarts) new pid=$(prop MainPID)"
    journalctl -b -u peergrid-edge.service --no-pager | grep -i -m1 watchdog | sed 's/^/  journal: /' >>"$out"
else
    say "NOT RESTARTED: $(prop ActiveState)/$(prop SubState) result=$(prop Result) restarts=$(prop NRestarts)"
    journalctl -b -u peergrid-edge.service --no-pager | tail -40 >>"$out"
fi
systemctl poweroff
