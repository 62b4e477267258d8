#!/bin/sh
# Re-record the live samples in live/: run scenario.py in a private namespace, copy
# its /proc/net files and what `ss -tuanH` printed at the same moment. Root only;
# the namespace is always deleted.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
py=${PYTHON:-$here/../../../.venv/bin/python}
ns=psrec-$$
ip netns add "$ns"
trap 'ip netns pids "$ns" 2>/dev/null | xargs -r kill -9; ip netns delete "$ns"' EXIT
ip -n "$ns" link set lo up
mkdir -p "$here/live"
fifo=$(mktemp -u); mkfifo "$fifo"
ip netns exec "$ns" "$py" "$here/scenario.py" --record < "$fifo" > "$fifo.out" &
exec 3>"$fifo"
while ! grep -q READY "$fifo.out" 2>/dev/null; do sleep 0.1; done
for f in tcp tcp6 udp udp6 udplite udplite6; do
    ip netns exec "$ns" cat /proc/net/$f > "$here/live/$f"
done
ip netns exec "$ns" ss -tuanH > "$here/live/ss-tuanH.txt"
exec 3>&-
wait
rm -f "$fifo" "$fifo.out"
echo "recorded into $here/live on $(uname -r)"
