#!/usr/bin/env bash
# CI docker stage: from a machine with no Docker at all to FastAPI containers under test.
#
#   1. docker.io + docker-compose (+ debootstrap) from Debian, when missing: the engine is
#      checked as `dockerd`, not `docker` (a machine may ship a client-only `docker` binary)
#   2. dockerd in the background (host networking only: --bridge=none --iptables=false), when
#      `docker info` does not answer; its log in $DOCKERD_LOG
#   3. offline images: debootstrap base, wheelhouse, runtime, fastapi, triton
#      (`servecap images build --offline fastapi triton`)
#   4. the Docker tests (`pytest -m docker`: launcher, stats collector, images, the Triton
#      container, a user's image as kind container, plan --verify; `make test` deselects
#      them), and a short `servecap run smoke --launcher docker`
#   5. nothing left: `servecap clean` semantics, dangling servecap images pruned
#
# Usage: targets/docker/ci.sh [--no-install]
#   --no-install   fail instead of apt-get installing missing tools
# Env: PYTHON (default .venv/bin/python), DOCKERD_LOG (default /tmp/dockerd.log),
#      CI_DOCKER_BUDGET_S (default 1500: the whole stage is stopped after that; it takes
#      about 12 min on a fresh machine: images 4.5, tests 7, scenario 1).
# Must run as root (apt, dockerd, debootstrap) or with passwordless sudo. Idempotent and fast
# when everything is already there (the tests: about 7 min).
set -euo pipefail
cd "$(dirname "$0")/../.."

INSTALL=1
for arg in "$@"; do
  case "$arg" in
    --no-install) INSTALL=0 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $arg" >&2; exit 2 ;;
  esac
done

PYTHON="${PYTHON:-.venv/bin/python}"
DOCKERD_LOG="${DOCKERD_LOG:-/tmp/dockerd.log}"
BUDGET_S="${CI_DOCKER_BUDGET_S:-1500}"
SUDO=""
[[ $(id -u) -eq 0 ]] || SUDO="sudo"
T0=$SECONDS
step_t=$SECONDS
log() { printf '[ci docker %(%H:%M:%S)T +%ss] %s\n' -1 "$((SECONDS - T0))" "$*" >&2; }
done_step() { log "$1 took $((SECONDS - step_t)) s"; step_t=$SECONDS; }
left_s() { echo $((BUDGET_S - (SECONDS - T0))); }
budget() { # $@ = command, stopped when the stage's budget is spent
  local left; left=$(left_s)
  [[ $left -gt 0 ]] || { echo "CI docker stage over its ${BUDGET_S} s budget" >&2; exit 124; }
  timeout --signal=TERM --kill-after=30 "$left" "$@"
}

# ------------------------------------------------------------------ 1. tools
missing=()
# The engine, not the client: some machine images ship a client-only `docker` on PATH.
command -v dockerd >/dev/null || [[ -x /usr/sbin/dockerd ]] || missing+=(docker.io)
command -v docker-compose >/dev/null || docker compose version >/dev/null 2>&1 || missing+=(docker-compose)
command -v debootstrap >/dev/null || missing+=(debootstrap)
if [[ ${#missing[@]} -gt 0 ]]; then
  [[ $INSTALL -eq 1 ]] || { echo "missing: ${missing[*]}" >&2; exit 1; }
  log "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  budget $SUDO apt-get update -q >/dev/null
  budget $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi
done_step "tools"

# ------------------------------------------------------------------ 2. engine
if ! docker info >/dev/null 2>&1; then
  log "starting dockerd (log: $DOCKERD_LOG)"
  $SUDO setsid nohup dockerd --bridge=none --iptables=false --storage-driver=overlay2 \
    >"$DOCKERD_LOG" 2>&1 < /dev/null &
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && break
    sleep 1
  done
  docker info >/dev/null 2>&1 || { tail -n 30 "$DOCKERD_LOG" >&2; echo "dockerd did not start" >&2; exit 1; }
fi
docker info --format 'engine {{.ServerVersion}}, cgroup v{{.CgroupVersion}}, {{.Driver}}' >&2
done_step "engine"

# ------------------------------------------------------------------ 3. images
budget "$PYTHON" -m loadtests.cli images build --offline fastapi triton
done_step "images"

# ------------------------------------------------------------------ 4. tests (+ scenario)
cleanup() {
  "$PYTHON" -c "from targets.launchers.docker import clean; print('\n'.join(clean()))" || true
  docker image prune -f --filter label=io.servecap.image >/dev/null || true
}
trap cleanup EXIT
budget "$PYTHON" -m pytest -q -p no:cacheprovider -m docker tests
done_step "docker tests"

if ! ls artifacts/models/cifar10_cnn/*/saved_model.pb >/dev/null 2>&1; then
  # A small real model for the scenario (accuracy is not the point here).
  budget "$PYTHON" -m loadtests.cli model train --train-limit 1000 --test-limit 500 --epochs 1
  done_step "small model"
fi
rm -rf results/ci-docker-smoke
budget "$PYTHON" -m loadtests.cli run smoke --launcher docker --out results/ci-docker-smoke
"$PYTHON" - <<'PY'
import json, pandas as pd
summary = json.load(open("results/ci-docker-smoke/summary.json"))
(run,) = summary["runs"]
samples = pd.read_parquet("results/ci-docker-smoke/fastapi/resources.parquet")
target = samples[samples["role"] == "target"]
assert run["launcher"] == "docker" and run["status"] == "ok", run
assert set(target["source"]) == {"docker"}, set(target["source"])
for stage in run["stages"]:
    assert stage["cpu_pct"] > 0 and stage["mem_mb"] > 100, stage
print("docker smoke: target CPU/memory from the Docker API:",
      [(round(s["cpu_pct"]), round(s["mem_mb"])) for s in run["stages"]])
PY
done_step "smoke scenario (docker launcher)"

left=$(docker ps -aq --filter label=io.servecap.managed | wc -l)
[[ $left -eq 0 ]] || { echo "$left servecap containers left behind" >&2; exit 1; }
log "docker stage passed in $((SECONDS - T0)) s"
