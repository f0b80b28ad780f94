#!/usr/bin/env bash
# Build a wheelhouse of cp311 manylinux wheels so Dockerfiles can install offline:
#   pip install --no-index --find-links /wheels -r requirements.txt
#
# Usage: targets/docker/build_wheelhouse.sh [-o DIR] [--no-host-constraints] [--force]
#                                            [--image IMAGE] REQUIREMENTS.txt [MORE.txt ...]
#   -o, --output DIR        wheelhouse dir (default: build/wheelhouse, gitignored)
#   --no-host-constraints   do not pin versions to what the host venv has installed
#   --force                 re-resolve online even if the wheelhouse already satisfies
#                           the requirements offline
#   --image IMAGE           also check with IMAGE's own python (docker run --network none)
#                           and add what it needs: pip evaluates environment markers with
#                           the interpreter it runs on, and Debian bookworm's python is
#                           3.11.2 while the host's may be newer (e.g. redis needs
#                           async-timeout only below 3.11.3). Downloads stay on the host.
# Env: PIP (default: <repo>/.venv/bin/pip), PIP_* as usual, DOCKER (default docker).
#
# Uses the host venv's pip (CPython 3.11, x86_64, glibc >= the bookworm base), so the
# wheels carry the cp311 ABI the servecap/base:bookworm-py311 image (and the official
# python:3.11-slim-bookworm) needs. `pip wheel` keeps binary wheels as downloaded and
# builds wheels for sdist-only packages, so the result installs with --no-index.
# By default versions are constrained to the host venv's (`pip freeze`), so containers
# serve with exactly the library versions the host benchmarks use.
# Idempotent: if the wheelhouse already resolves the requirements offline, exits fast.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
OUT="$REPO/build/wheelhouse"
PIP="${PIP:-$REPO/.venv/bin/pip}"
HOST_CONSTRAINTS=1
FORCE=0
IMAGE=""
DOCKER="${DOCKER:-docker}"
REQS=()

while [[ $# -gt 0 ]]; do
  case "$1" in
    -o|--output) OUT="$2"; shift ;;
    --no-host-constraints) HOST_CONSTRAINTS=0 ;;
    --force) FORCE=1 ;;
    --image) IMAGE="$2"; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) echo "unknown option: $1" >&2; exit 2 ;;
    *) REQS+=("$1") ;;
  esac
  shift
done
[[ ${#REQS[@]} -gt 0 ]] || { echo "usage: $0 [-o DIR] REQUIREMENTS.txt [...]" >&2; exit 2; }
[[ -x $PIP ]] || { echo "pip not found at $PIP (set PIP=...)" >&2; exit 1; }

log() { printf '[build_wheelhouse %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
T0=$SECONDS

PYTAG=$("${PIP%/pip}/python" -c 'import sys; print("cp%d%d" % sys.version_info[:2])' 2>/dev/null \
        || echo unknown)
[[ $PYTAG == cp311 ]] || { echo "host pip's python is $PYTAG, need cp311 (base image is 3.11)" >&2; exit 1; }

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
req_args=()
for r in "${REQS[@]}"; do
  [[ -f $r ]] || { echo "no such requirements file: $r" >&2; exit 1; }
  req_args+=(-r "$(cd "$(dirname "$r")" && pwd)/$(basename "$r")")
done

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# Offline check: does the wheelhouse alone satisfy the requirements (what a Dockerfile does)?
offline_ok() {
  "$PIP" install --isolated --dry-run --ignore-installed --no-index --find-links "$OUT" \
    --only-binary=:all: --quiet --report "$TMP/report.json" "${req_args[@]}" >"$TMP/check.log" 2>&1
}

# The same check with the image's interpreter, offline too (--network none), wheels mounted.
# Requirement files are copied into $TMP/reqs so they can be mounted whatever their location.
mkdir -p "$TMP/reqs"
img_req_args=()
for i in "${!req_args[@]}"; do
  if [[ ${req_args[$i]} != -r ]]; then
    cp "${req_args[$i]}" "$TMP/reqs/req$i.txt"; img_req_args+=(-r "/reqs/req$i.txt")
  fi
done
in_image() { # $1 = network mode, then the pip arguments
  local net=$1; shift
  "$DOCKER" run --rm --network "$net" --user "$(id -u):$(id -g)" -e HOME=/tmp \
    -e PIP_DISABLE_PIP_VERSION_CHECK=1 -v "$OUT:/wheels" -v "$TMP/reqs:/reqs:ro" \
    --entrypoint pip "$IMAGE" "$@"
}
image_offline_ok() {
  [[ -z $IMAGE ]] && return 0
  in_image none install --dry-run --ignore-installed --no-index --find-links /wheels \
    --only-binary=:all: --quiet "${img_req_args[@]}" >"$TMP/image-check.log" 2>&1
}

if [[ $FORCE -eq 0 ]] && offline_ok && image_offline_ok; then
  log "wheelhouse $OUT already satisfies ${REQS[*]} offline ($(find "$OUT" -maxdepth 1 -name "*.whl" | wc -l) wheels," \
      "$(du -sh "$OUT" | cut -f1)); nothing to do (use --force to re-resolve)"
  exit 0
fi

con_args=()
if [[ $HOST_CONSTRAINTS -eq 1 ]]; then
  # name==version lines only (skips the editable servecap install and direct URLs)
  "$PIP" freeze --exclude-editable 2>/dev/null | grep -E '^[A-Za-z0-9._-]+==[^ ;@]+$' \
    > "$TMP/host-constraints.txt" || true
  con_args=(-c "$TMP/host-constraints.txt")
  log "constraining to host venv versions ($(wc -l < "$TMP/host-constraints.txt") pins)"
fi

log "pip wheel -> $OUT for ${REQS[*]} ..."
t=$SECONDS
# --find-links OUT: reuse what is already there; --prefer-binary: manylinux wheels over sdists
if ! "$PIP" wheel --wheel-dir "$OUT" --find-links "$OUT" --prefer-binary --progress-bar off \
     "${con_args[@]}" "${req_args[@]}" >"$TMP/wheel.log" 2>&1; then
  tail -n 40 "$TMP/wheel.log" >&2; echo "pip wheel failed" >&2; exit 1
fi
grep -E '^(Building wheel|Successfully|WARNING|ERROR)' "$TMP/wheel.log" | grep -v 'it is neither a file nor a directory' >&2 || true
log "pip wheel took $((SECONDS - t))s"

# Resolving with --only-binary on the host interpreter (cp311, glibc of bookworm) proves
# every selected wheel is installable in the bookworm/python3.11 images.
offline_ok || { cat "$TMP/check.log" >&2; echo "wheelhouse does not satisfy requirements offline" >&2; exit 1; }

# The image's interpreter may need more (its markers differ): ask it, offline, what is missing,
# fetch that on the host (the container has no route to the index), repeat. Bounded.
if [[ -n $IMAGE ]]; then
  for round in 1 2 3 4 5 6 7 8; do
    image_offline_ok && break
    missing=$(sed -n 's/.*Could not find a version that satisfies the requirement \([^;(]*\).*/\1/p' \
              "$TMP/image-check.log" | head -n 1 | sed 's/[[:space:]]*$//')
    if [[ -z $missing ]]; then
      tail -n 20 "$TMP/image-check.log" >&2
      echo "wheelhouse does not satisfy requirements in $IMAGE" >&2; exit 1
    fi
    log "$IMAGE's python also needs '$missing' (environment markers); fetching it"
    if ! "$PIP" wheel --wheel-dir "$OUT" --find-links "$OUT" --prefer-binary --progress-bar off \
         "${con_args[@]}" "$missing" >"$TMP/wheel-extra.log" 2>&1; then
      tail -n 20 "$TMP/wheel-extra.log" >&2; echo "pip wheel '$missing' failed" >&2; exit 1
    fi
  done
  image_offline_ok || { tail -n 20 "$TMP/image-check.log" >&2; echo "wheelhouse does not satisfy requirements in $IMAGE" >&2; exit 1; }
fi
log "done in $((SECONDS - T0))s: $(find "$OUT" -maxdepth 1 -name "*.whl" | wc -l) wheels, $(du -sh "$OUT" | cut -f1) in $OUT"
