#!/usr/bin/env bash
# The hostile-program tests again, as an ordinary user (the sandbox's user-namespace mode), with the same
# expectations as root's (.ci/run runs them as root first, with every other test).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
    echo "ci-sandbox-user: needs root (to create the ordinary user); skipped" >&2
    exit 0
fi
REPO=$(pwd -P)
USER_NAME=${PROMIS_REPRO_SANDBOX_USER:-promis-sandbox}
id "$USER_NAME" >/dev/null 2>&1 || useradd --create-home --shell /bin/bash "$USER_NAME"
HOME_DIR=$(getent passwd "$USER_NAME" | cut -d: -f6)
# a directory the user owns outside their home and /tmp, for the tests' victim files and socket
VICTIM_DIR=/srv/promis-sandbox-victim

# the user must reach this checkout and its interpreter (pyenv may live under /root): grant others the
# traverse bit on the directories above them that lack it, for this run only; restore them after,
# whatever happens (the trap is set before the first change)
restore=()
cleanup() {
    rm -rf "$VICTIM_DIR"
    for entry in ${restore[@]+"${restore[@]}"}; do
        chmod "${entry%%:*}" "${entry#*:}" || echo "ci-sandbox-user: could not restore ${entry#*:}" >&2
    done
}
trap cleanup EXIT
install -d -o "$USER_NAME" -m 0755 "$VICTIM_DIR"
# pytest lists the checkout's own directory (its rootdir), so there the user needs read as well
mode=$(stat -c %a "$REPO")
if [ $((8#$mode & 5)) -ne 5 ]; then
    restore+=("$mode:$REPO")
    chmod o+rx "$REPO"
fi
for start in "$(dirname "$(readlink -f "$REPO/.venv/bin/python")")" "$REPO"; do
    dir=$start
    while [ "$dir" != "/" ]; do
        mode=$(stat -c %a "$dir")
        if [ $((8#$mode & 1)) -eq 0 ]; then
            restore+=("$mode:$dir")
            chmod o+x "$dir"
        fi
        dir=$(dirname "$dir")
    done
done

runuser -u "$USER_NAME" -- env -i HOME="$HOME_DIR" PATH=/usr/bin:/bin LANG=C.UTF-8 \
    PROMIS_REPRO_SANDBOX_VICTIM_DIR="$VICTIM_DIR" \
    "$REPO/.venv/bin/python" -m pytest -q -p no:cacheprovider "$REPO/tests/test_sandbox_hostile.py"
