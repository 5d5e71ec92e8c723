#!/usr/bin/env bash
# Download the wheels digitexp needs on a lent GPU machine (CPython 3.12 on x86-64 with torch
# preinstalled, no network) into one folder, exactly one version of each, and print their
# total size. `bash benchmarks/gpu_check.sh prepare` (and `make gpu-wheels`) run this.
#
# usage: benchmarks/gpu/wheels.sh [--queue] [DEST]    (DEST defaults to .whl, from the cwd)
#   --queue   also the optional Postgres queue wheels (requirements-queue.txt, ~4 MiB)
# env: PYTHON (default python3) runs pip; REQS overrides the requirements file.
#
# Any other *.whl already in DEST is removed (two versions of one package stop the install).
# Exit status: 0 ok; 1 a wheel could not be found or downloaded (named on stderr); 2 bad usage.
#
# There, `bash benchmarks/gpu_check.sh` installs them with
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
#     --target /tmp/site .whl/*.whl
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PYTHON=${PYTHON:-python3}
reqs=("${REQS:-$here/requirements.txt}")
dest=.whl
while [ $# -gt 0 ]; do
    case $1 in
        --queue) reqs+=("$here/requirements-queue.txt") ;;
        -h | --help) sed -n '2,15p' "$0"; exit 0 ;;
        -*) echo "wheels.sh: unknown option $1" >&2; exit 2 ;;
        *) dest=$1 ;;
    esac
    shift
done

# CPython 3.12 on manylinux x86-64 (pure-python wheels match too).
platforms=(manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64
    manylinux2014_x86_64 manylinux1_x86_64)
pip_args=(download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp
    --disable-pip-version-check -q)
for p in "${platforms[@]}"; do pip_args+=(--platform "$p"); done

specs=()
for f in "${reqs[@]}"; do
    [ -r "$f" ] || { echo "wheels.sh: cannot read $f" >&2; exit 2; }
    while IFS= read -r line; do
        line=${line%%#*}
        line=$(echo "$line" | tr -d '[:space:]')
        [ -n "$line" ] || continue
        case $line in
            *==*) specs+=("$line") ;;
            *) echo "wheels.sh: $f: '$line' is not NAME==VERSION" >&2; exit 2 ;;
        esac
    done <"$f"
done

mkdir -p "$dest"
norm() { echo "$1" | tr 'A-Z' 'a-z' | sed -E 's/[-_.]+/_/g'; }

failed=()
keep=()
# one pip call for all (fast); when it fails, one call per wheel to name each one missing
echo "downloading ${#specs[@]} wheels into $dest ..."
if ! all_out=$("$PYTHON" -m pip "${pip_args[@]}" -d "$dest" "${specs[@]}" 2>&1); then
    echo "$all_out" | grep -E "^ERROR" >&2 || true
    echo "wheels.sh: pip failed; trying each wheel alone to see which ..." >&2
    for spec in "${specs[@]}"; do
        if ! out=$("$PYTHON" -m pip "${pip_args[@]}" -d "$dest" "$spec" 2>&1); then
            echo "wheels.sh: pip found no usable wheel for $spec:" >&2
            echo "$out" | grep -E "^ERROR" | sed 's/^/    /' >&2 || true
            failed+=("$spec")
        fi
    done
fi
for spec in "${specs[@]}"; do
    name=${spec%%==*}
    version=${spec#*==}
    for f in "${failed[@]}"; do [ "$f" = "$spec" ] && continue 2; done
    # the file pip saved for it (names in wheel files are normalized: lower case, '_')
    n=$(norm "$name")
    match=""
    for w in "$dest"/*.whl; do
        b=$(basename "$w")
        [ "$(norm "${b%%-*}")" = "$n" ] || continue
        v=${b#*-}
        v=${v%%-*}
        [ "$v" = "$version" ] && match=$b
    done
    if [ -z "$match" ]; then
        echo "wheels.sh: pip reported success for $spec but no matching wheel is in $dest" >&2
        failed+=("$spec")
        continue
    fi
    keep+=("$match")
done

if [ ${#failed[@]} -gt 0 ]; then
    echo "wheels.sh: FAILED: no wheel for: ${failed[*]}" >&2
    echo "  (is the index reachable? for a binary wheel, a --platform manylinux_2_N_x86_64 may be missing)" >&2
    exit 1
fi

# exactly the listed wheels: drop any other version or package left from an earlier run
for w in "$dest"/*.whl; do
    b=$(basename "$w")
    found=0
    for k in "${keep[@]}"; do [ "$k" = "$b" ] && found=1 && break; done
    if [ $found = 0 ]; then
        echo "removing $b (not in the list)"
        rm -f -- "$w"
    fi
done

echo "wheels in $dest (${#keep[@]}), largest first:"
(cd "$dest" && ls -l -- "${keep[@]}" | awk '{printf "  %7.2f MiB  %s\n", $5/1048576, $9}' | sort -rn)
bytes=$(cd "$dest" && cat -- "${keep[@]}" | wc -c)
mib=$(awk -v b="$bytes" 'BEGIN{printf "%.2f", b/1048576}')
echo "total: $mib MiB in ${#keep[@]} wheels"
if awk -v b="$bytes" 'BEGIN{exit !(b > 50*1048576)}'; then
    echo "wheels.sh: WARNING: over 50 MiB; the tree that travels is capped at 64 MiB" >&2
fi
