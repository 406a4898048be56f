#!/usr/bin/env bash
# The hostile-program tests again, as an ordinary user (the sandbox's user-namespace mode), with the same
# expectations as root's (.ci/run runs them as root first, with every other test).
set -euo pipefail
cd "$(dirname "$0")/.."
USER_NAME=${PROMIS_REPRO_SANDBOX_USER:-promis-sandbox}
id "$USER_NAME" >/dev/null 2>&1 || useradd --create-home --shell /bin/bash "$USER_NAME"
HOME_DIR=$(getent passwd "$USER_NAME" | cut -d: -f6)

# the user must reach this checkout and its interpreter (pyenv may live under /root): grant others the
# traverse bit on the directories above them that lack it, for this run only, and restore them after
restore=()
for start in "$(dirname "$(readlink -f .venv/bin/python)")" "$PWD"; do
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
cleanup() { for entry in "${restore[@]}"; do chmod "${entry%%:*}" "${entry#*:}"; done; }
trap cleanup EXIT

runuser -u "$USER_NAME" -- env -i HOME="$HOME_DIR" PATH=/usr/bin:/bin LANG=C.UTF-8 \
    .venv/bin/python -m pytest -q -p no:cacheprovider tests/test_sandbox_hostile.py
