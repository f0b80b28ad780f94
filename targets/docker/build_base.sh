#!/usr/bin/env bash
# Build the offline base image(s) for servecap targets from nothing (no registry).
#
#   servecap/base:bookworm-py311      debootstrap minbase + python3 (3.11, cp311 ABI),
#                                     python3-venv, ca-certificates, tini, user `app`
#                                     (uid 10001), root-owned venv at /opt/venv on PATH.
#   servecap/base:bookworm-py311-web  (only with --web) the above + nginx-light and
#                                     redis-server preinstalled. Normally NOT needed:
#                                     `docker build --network host` reaches the apt mirror,
#                                     so derived Dockerfiles can simply apt-get install.
#
# Stand-in for `python:3.11-slim-bookworm` on hosts without a registry; Dockerfiles take
# `--build-arg BASE_IMAGE=servecap/base:bookworm-py311`.
#
# Usage: targets/docker/build_base.sh [--force] [--web] [--mirror URL] [--security-mirror URL]
#                                      [--no-upgrade] [--tag IMAGE]
#   --force            rebuild even if the image already exists
#   --web              also build the -web variant (nginx-light, redis-server)
#   --mirror URL       Debian mirror (default: the one this host's apt uses)
#   --no-upgrade       skip `apt-get upgrade` against bookworm-updates/-security
#   --tag IMAGE        image name (default servecap/base:bookworm-py311)
# Env: DOCKER (docker CLI, default `docker`), DEBIAN_MIRROR, DEBIAN_SECURITY_MIRROR.
#
# Idempotent: exits quickly when the image exists. Needs root (debootstrap/chroot).
set -euo pipefail

SUITE=bookworm
TAG=servecap/base:bookworm-py311
FORCE=0
WEB=0
UPGRADE=1
MIRROR="${DEBIAN_MIRROR:-}"
SEC_MIRROR="${DEBIAN_SECURITY_MIRROR:-}"
DOCKER="${DOCKER:-docker}"
APP_UID=10001
# Keep this small: python3 (bookworm = 3.11), venv/ensurepip, TLS roots, an init.
PACKAGES=(python3 python3-venv ca-certificates tini)
WEB_PACKAGES=(nginx-light redis-server)

while [[ $# -gt 0 ]]; do
  case "$1" in
    --force) FORCE=1 ;;
    --web) WEB=1 ;;
    --no-upgrade) UPGRADE=0 ;;
    --mirror) MIRROR="$2"; shift ;;
    --security-mirror) SEC_MIRROR="$2"; shift ;;
    --tag) TAG="$2"; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done
WEB_TAG="${TAG}-web"

log() { printf '[build_base %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
T0=$SECONDS
step_t=$SECONDS
timing() { log "$1 took $((SECONDS - step_t))s"; step_t=$SECONDS; }

image_exists() { "$DOCKER" image inspect "$1" >/dev/null 2>&1; }

# ---------------------------------------------------------------- preconditions
"$DOCKER" info >/dev/null 2>&1 || { echo "docker engine not reachable ('$DOCKER info' failed)" >&2; exit 1; }

need_base=1; need_web=0
if [[ $FORCE -eq 0 ]] && image_exists "$TAG"; then need_base=0; fi
if [[ $WEB -eq 1 ]] && { [[ $FORCE -eq 1 ]] || ! image_exists "$WEB_TAG"; }; then need_web=1; fi
if [[ $need_base -eq 0 && $need_web -eq 0 ]]; then
  log "$TAG already exists$([[ $WEB -eq 1 ]] && echo " (and $WEB_TAG)"); nothing to do (use --force to rebuild)"
  exit 0
fi

[[ $(id -u) -eq 0 ]] || { echo "must run as root (debootstrap/chroot)" >&2; exit 1; }
for t in debootstrap chroot tar; do
  command -v "$t" >/dev/null || { echo "missing tool: $t (apt-get install -y debootstrap)" >&2; exit 1; }
done

# First deb.debian.org-style URI this host's apt uses (deb822 *.sources or one-line lists).
detect_mirror() { # $1 = regex the URI must match, $2 = regex it must NOT match
  local f uri
  for f in /etc/apt/sources.list.d/*.sources; do
    [[ -f $f ]] || continue
    while read -r uri; do
      if [[ $uri =~ $1 && ! $uri =~ $2 ]]; then echo "${uri%/}"; return 0; fi
    done < <(awk '/^URIs:/ {for (i = 2; i <= NF; i++) print $i}' "$f")
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [[ -f $f ]] || continue
    while read -r uri; do
      if [[ $uri =~ $1 && ! $uri =~ $2 ]]; then echo "${uri%/}"; return 0; fi
    done < <(awk '$1 == "deb" {for (i = 2; i <= NF; i++) if ($i ~ /^[a-z+]+:\/\//) {print $i; break}}' "$f")
  done
  return 1
}
if [[ -z $MIRROR ]]; then
  MIRROR=$(detect_mirror '/debian$|/debian/$' 'security') || MIRROR=http://deb.debian.org/debian
fi
if [[ -z $SEC_MIRROR ]]; then
  SEC_MIRROR=$(detect_mirror 'debian-security' '^$') || SEC_MIRROR=http://deb.debian.org/debian-security
fi
log "mirror=$MIRROR security=$SEC_MIRROR suite=$SUITE"

WORK=$(mktemp -d /var/tmp/servecap-rootfs.XXXXXX)
ROOTFS="$WORK/rootfs"
cleanup() {
  local rc=$?
  local m
  for m in "$ROOTFS/proc" "$ROOTFS/dev"; do
    if mountpoint -q "$m" 2>/dev/null; then umount -l "$m" || true; fi
  done
  rm -rf --one-file-system "$WORK"
  exit $rc
}
trap cleanup EXIT

# run quietly; show the output only on failure
quiet() { "$@" >"$WORK/step.log" 2>&1 || { local rc=$?; tail -n 40 "$WORK/step.log" >&2; return $rc; }; }

in_root() { chroot "$ROOTFS" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
  HOME=/root LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"; }

# Remove everything an image does not need; keep copyright files.
strip_rootfs() {
  rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/* "$ROOTFS"/var/cache/debconf/*-old \
         "$ROOTFS"/var/log/* "$ROOTFS"/tmp/* "$ROOTFS"/var/tmp/* "$ROOTFS"/root/.cache
  find "$ROOTFS/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete 2>/dev/null || true
  find "$ROOTFS/usr/share/doc" -mindepth 1 -type d -empty -delete 2>/dev/null || true
  rm -rf "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/* "$ROOTFS"/usr/share/lintian \
         "$ROOTFS"/usr/share/linda
  find "$ROOTFS/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name 'locale.alias' \
       -exec rm -rf {} + 2>/dev/null || true
  find "$ROOTFS" -xdev -name '__pycache__' -type d -prune -exec rm -rf {} + 2>/dev/null || true
  : > "$ROOTFS/etc/resolv.conf"
  : > "$ROOTFS/etc/hostname" 2>/dev/null || true
  rm -f "$ROOTFS/etc/machine-id" "$ROOTFS/var/lib/dbus/machine-id"
}

import_rootfs() { # $1 = tag
  local tag="$1"
  tar --numeric-owner --xattrs -C "$ROOTFS" -c . | "$DOCKER" import \
    --change 'ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV PYTHONUNBUFFERED=1' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV VIRTUAL_ENV=/opt/venv' \
    --change 'ENV PIP_DISABLE_PIP_VERSION_CHECK=1' \
    --change 'ENV PIP_NO_CACHE_DIR=1' \
    --change "LABEL org.opencontainers.image.title=$tag" \
    --change "LABEL org.opencontainers.image.description=\"servecap offline base (debootstrap $SUITE minbase)\"" \
    --change "LABEL servecap.debian.mirror=$MIRROR" \
    --change 'CMD ["python3"]' \
    - "$tag" >/dev/null
  log "imported $tag ($("$DOCKER" image inspect -f '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1/1e6}'))"
}

# ---------------------------------------------------------------- rootfs
log "debootstrap --variant=minbase $SUITE (${PACKAGES[*]}) ..."
incl=$(IFS=,; echo "${PACKAGES[*]}")
if ! debootstrap --variant=minbase --include="$incl" "$SUITE" "$ROOTFS" "$MIRROR" \
     >"$WORK/debootstrap.log" 2>&1; then
  tail -n 40 "$WORK/debootstrap.log" >&2
  [[ -f $ROOTFS/debootstrap/debootstrap.log ]] && tail -n 40 "$ROOTFS/debootstrap/debootstrap.log" >&2
  exit 1
fi
timing "debootstrap"

# apt sources for derived images (same mirror as the host) + slim-image apt/dpkg policy
rm -f "$ROOTFS/etc/apt/sources.list"
cat > "$ROOTFS/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $SEC_MIRROR
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
cat > "$ROOTFS/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
cat > "$ROOTFS/etc/apt/apt.conf.d/docker-no-recommends" <<'EOF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
EOF
cat > "$ROOTFS/etc/dpkg/dpkg.cfg.d/docker-excludes" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
EOF
# services must never start during package installs in a chroot/image build
printf '#!/bin/sh\nexit 101\n' > "$ROOTFS/usr/sbin/policy-rc.d"
chmod 0755 "$ROOTFS/usr/sbin/policy-rc.d"

cp /etc/resolv.conf "$ROOTFS/etc/resolv.conf"   # only for the chroot apt calls below
mount -t proc proc "$ROOTFS/proc"
if [[ $UPGRADE -eq 1 ]]; then
  log "apt-get upgrade from $SUITE-updates/$SUITE-security ..."
  quiet in_root apt-get -q update
  quiet in_root apt-get -q -y -o Dpkg::Options::=--force-confold dist-upgrade
  in_root apt-get -qq clean
  timing "apt upgrade"
fi

log "user app (uid $APP_UID) + venv /opt/venv ..."
in_root groupadd --gid "$APP_UID" app
in_root useradd --uid "$APP_UID" --gid "$APP_UID" --create-home --home-dir /home/app \
  --shell /bin/bash app
in_root python3 -m venv /opt/venv
in_root /opt/venv/bin/python -m pip --version >/dev/null
mkdir -p "$ROOTFS/app" "$ROOTFS/wheels"
chown "$APP_UID:$APP_UID" "$ROOTFS/app"
PYVER=$(in_root /opt/venv/bin/python -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')
[[ $PYVER == 3.11.* ]] || { echo "expected python 3.11 in $SUITE, got $PYVER" >&2; exit 1; }
timing "user+venv (python $PYVER)"

umount "$ROOTFS/proc"
if [[ $need_web -eq 1 ]]; then
  # Snapshot the base rootfs (proc unmounted!) so the web variant does not leak into the base.
  mountpoint -q "$ROOTFS/proc" && { echo "refusing to copy rootfs with /proc mounted" >&2; exit 1; }
  cp -a --one-file-system "$ROOTFS" "$WORK/rootfs-web"
fi

strip_rootfs
if [[ $need_base -eq 1 ]]; then
  import_rootfs "$TAG"
  timing "import $TAG"
fi

if [[ $need_web -eq 1 ]]; then
  rm -rf --one-file-system "$ROOTFS"
  mv "$WORK/rootfs-web" "$ROOTFS"
  mount -t proc proc "$ROOTFS/proc"
  log "web variant: ${WEB_PACKAGES[*]} ..."
  quiet in_root apt-get -q update
  quiet in_root apt-get -q -y install --no-install-recommends "${WEB_PACKAGES[@]}"
  in_root apt-get -qq clean
  umount "$ROOTFS/proc"
  strip_rootfs
  import_rootfs "$WEB_TAG"
  timing "web variant"
fi

log "done in $((SECONDS - T0))s"
"$DOCKER" image ls servecap/base
