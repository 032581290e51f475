#!/usr/bin/env bash
# A real OpenXR runtime for tests: Monado's simulated headset, in a Debian 13 chroot (Debian 12 has no OpenXR
# runtime, and Monado's library needs glibc 2.38, so the client runs inside the chroot too; see FACTS.md).
#
#   openxr-runtime.sh build        debootstrap trixie + Monado + a Python venv with the project's wheels (cached)
#   openxr-runtime.sh start        mount, start monado-service (simulated HMD, null compositor), wait for its socket
#   openxr-runtime.sh run CMD...   run CMD inside the chroot: project at /project, venv active, runtime reachable
#   openxr-runtime.sh stop         stop monado-service, unmount everything
#   openxr-runtime.sh test [ARGS]  build + start + pytest tests/capture/test_openxr_runtime.py [ARGS] inside + stop
#   openxr-runtime.sh status       what is built, mounted and running
#   openxr-runtime.sh clean        stop, then delete the chroot and the wheel cache
#
# Everything lives under $VRCAP_OPENXR_DIR (default: <repo>/.cache/openxr-chroot, git-ignored). Each phase leaves a
# stamp holding its recipe; a phase runs again only when its recipe changed, so a second `build` takes a second.
# Cold: ~75-95 s and 1.6 GB (debootstrap ~35 s, apt ~30-45 s, wheels ~4 s, venv ~12 s); `test` then ~12-15 s.
# Needs root and debootstrap. Without them, or when the build fails, `test` fails under CI (CI set) and
# otherwise exits 0 saying why it skipped, so a laptop without root stays green.
# Monado's simulated controllers: VRCAP_OPENXR_LEFT / VRCAP_OPENXR_RIGHT = simple | wmr | ml2 | "" (none);
# default wmr left, simple right. One `start` at a time per folder: `stop` ends the runtime for everyone.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DIR="${VRCAP_OPENXR_DIR:-$REPO/.cache/openxr-chroot}"
ROOT="$DIR/root"
WHEELS="$DIR/wheels"
LOG="$DIR/logs"
SUITE="${VRCAP_OPENXR_SUITE:-trixie}"
MIRROR="${VRCAP_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
CHROOT_PY=3.13 # Debian 13's python3
# monado-service + its library; the Khronos loader and utils (openxr_runtime_list) help when debugging by hand;
# mesa-vulkan-drivers gives the service the software Vulkan device its null compositor still asks for;
# libportaudio2 lets `vrcap devices` (sounddevice) run as it does on a user's machine.
APT_PACKAGES=(monado-service libopenxr1-monado libopenxr-loader1 libopenxr-utils mesa-vulkan-drivers python3-venv
    libportaudio2)
# What vrcap/ and capture/ import on the OpenXR path, plus the test tools (tests/conftest.py imports hypothesis);
# pydantic: the config classes are pydantic dataclasses (issue 13).
# The record path itself needs no OpenCV or sounddevice (both are imported lazily, for cameras and microphones);
# `vrcap devices` imports both, so they are here for the test of that command.
PY_REQUIREMENTS=(numpy msgpack lz4 isal pyyaml rich pydantic pyopenxr==1.1.6501 pytest hypothesis sounddevice
    opencv-python-headless)
VENV=/opt/vrcap-venv # inside the chroot
XDG=/run/vrcap-xr    # XDG_RUNTIME_DIR inside the chroot: monado's socket lives here
PIDFILE="$DIR/monado.pid"
# Monado's simulated controllers ("simple", "wmr" or "ml2"; empty for none): two profiles, two binding sets tried.
SIM_LEFT="${VRCAP_OPENXR_LEFT-wmr}"
SIM_RIGHT="${VRCAP_OPENXR_RIGHT-simple}"

say() { echo "openxr-runtime: $*" >&2; }
die() {
    echo "openxr-runtime: $*" >&2
    exit 1
}
now() { date +%s.%N; }
took() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
recipe_hash() { printf '%s\n' "$@" | sha256sum | cut -c1-16; }

# --- can this machine do it? ------------------------------------------------------------------------------

why_not() {
    [ "$(id -u)" = 0 ] || {
        echo "needs root (debootstrap, chroot, mount)"
        return
    }
    command -v debootstrap >/dev/null 2>&1 || {
        echo "debootstrap is not installed (apt-get install -y debootstrap)"
        return
    }
    [ "$(uname -m)" = x86_64 ] || echo "only x86_64 is set up (the wheels are manylinux x86_64)"
}

# --- mounts --------------------------------------------------------------------------------------------------

is_mounted() { mountpoint -q "$1" 2>/dev/null; }

mount_all() {
    mkdir -p "$ROOT/proc" "$ROOT/dev" "$ROOT/tmp" "$ROOT/project" "$ROOT/wheels"
    is_mounted "$ROOT/proc" || mount -t proc proc "$ROOT/proc"
    if ! is_mounted "$ROOT/dev"; then
        mount --rbind /dev "$ROOT/dev"
        mount --make-rslave "$ROOT/dev" # an unmount inside must never propagate to the host's /dev
    fi
    is_mounted "$ROOT/tmp" || mount -t tmpfs -o mode=1777 tmpfs "$ROOT/tmp"
    is_mounted "$ROOT/project" || mount --bind "$REPO" "$ROOT/project"
    is_mounted "$ROOT/wheels" || { [ -d "$WHEELS" ] && mount --bind "$WHEELS" "$ROOT/wheels"; } || true
}

umount_all() {
    local m
    for m in wheels project tmp dev proc; do
        if is_mounted "$ROOT/$m"; then
            umount -R "$ROOT/$m" 2>/dev/null || umount -R -l "$ROOT/$m"
        fi
    done
}

# Deleting a chroot with /dev or the project still bound into it would delete the host's: refuse.
safe_wipe() {
    umount_all
    if findmnt -rn -o TARGET | grep -q "^$ROOT/"; then
        die "refusing to delete $ROOT: something is still mounted under it (findmnt | grep $ROOT)"
    fi
    rm -rf "$ROOT"
}

in_chroot() {
    chroot "$ROOT" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        HOME=/root LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"
}

# --- build ---------------------------------------------------------------------------------------------------

build_base() {
    local want have=""
    want="$(recipe_hash "$SUITE" "$MIRROR")"
    [ -f "$DIR/base.stamp" ] && have="$(cat "$DIR/base.stamp")"
    if [ "$want" = "$have" ] && [ -x "$ROOT/usr/bin/apt-get" ]; then
        say "chroot: cached ($ROOT)"
        return
    fi
    rm -f "$DIR/base.stamp" "$DIR/apt.stamp" "$DIR/venv.stamp"
    [ -e "$ROOT" ] && safe_wipe # a half-built or outdated chroot: start over rather than guess
    local t
    t="$(now)"
    mkdir -p "$LOG"
    debootstrap --variant=minbase --include=ca-certificates "$SUITE" "$ROOT" "$MIRROR" >"$LOG/debootstrap.log" 2>&1 ||
        die "debootstrap $SUITE failed; see $LOG/debootstrap.log"
    echo "$want" >"$DIR/base.stamp"
    say "chroot: debootstrap $SUITE took $(took "$t") s"
}

# Packages apart from debootstrap: adding one is an apt-get install, not a new chroot.
build_packages() {
    local want have=""
    want="$(recipe_hash "$(cat "$DIR/base.stamp")" "${APT_PACKAGES[@]}")"
    [ -f "$DIR/apt.stamp" ] && have="$(cat "$DIR/apt.stamp")"
    if [ "$want" = "$have" ] && [ -x "$ROOT/usr/bin/monado-service" ]; then
        say "packages: cached"
        return
    fi
    rm -f "$DIR/apt.stamp" "$DIR/venv.stamp"
    local t
    t="$(now)"
    cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf" 2>/dev/null || true
    mount_all
    {
        in_chroot apt-get update -qq &&
            in_chroot apt-get install -y -qq --no-install-recommends "${APT_PACKAGES[@]}" &&
            in_chroot apt-get clean
    } >"$LOG/apt.log" 2>&1 || die "apt-get install inside the chroot failed; see $LOG/apt.log"
    echo "$want" >"$DIR/apt.stamp"
    say "packages: apt-get install ${APT_PACKAGES[*]} took $(took "$t") s"
}

host_pip() {
    # Any pip of the host will do: the project's venv if there is one, else a small one of our own.
    if [ -x "$REPO/.venv/bin/python" ]; then
        "$REPO/.venv/bin/python" -m pip "$@"
    else
        [ -x "$DIR/pip-venv/bin/python" ] || python3 -m venv "$DIR/pip-venv" || die "python3 -m venv failed (apt-get install python3-venv)"
        "$DIR/pip-venv/bin/python" -m pip "$@"
    fi
}

build_wheels() {
    local want have=""
    want="$(recipe_hash "$CHROOT_PY" "${PY_REQUIREMENTS[@]}")"
    [ -f "$DIR/wheels.stamp" ] && have="$(cat "$DIR/wheels.stamp")"
    if [ "$want" = "$have" ]; then
        say "wheels: cached ($WHEELS)"
        return
    fi
    local t
    t="$(now)"
    rm -rf "$WHEELS" "$DIR/venv.stamp"
    mkdir -p "$WHEELS" "$LOG"
    # pip inside the chroot lacks the host's CA set-up: fetch on the host, install offline inside.
    host_pip download --quiet --disable-pip-version-check --only-binary=:all: --dest "$WHEELS" \
        --python-version "$CHROOT_PY" --implementation cp --abi "cp${CHROOT_PY/./}" \
        --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
        --platform manylinux_2_34_x86_64 --platform linux_x86_64 \
        "${PY_REQUIREMENTS[@]}" >"$LOG/pip-download.log" 2>&1 ||
        die "pip download of the chroot's wheels failed; see $LOG/pip-download.log"
    echo "$want" >"$DIR/wheels.stamp"
    say "wheels: pip download for cp${CHROOT_PY/./} took $(took "$t") s ($(du -sh "$WHEELS" | cut -f1))"
}

build_venv() {
    local want have=""
    want="$(recipe_hash "$(cat "$DIR/apt.stamp" "$DIR/wheels.stamp")")"
    [ -f "$DIR/venv.stamp" ] && have="$(cat "$DIR/venv.stamp")"
    if [ "$want" = "$have" ] && [ -x "$ROOT$VENV/bin/python" ]; then
        say "venv: cached ($VENV in the chroot)"
        return
    fi
    local t
    t="$(now)"
    mount_all
    rm -rf "${ROOT:?}$VENV"
    {
        in_chroot python3 -m venv "$VENV" &&
            in_chroot "$VENV/bin/pip" install --quiet --disable-pip-version-check --no-index --find-links /wheels \
                "${PY_REQUIREMENTS[@]}"
    } >"$LOG/venv.log" 2>&1 || die "installing the wheels into the chroot's venv failed; see $LOG/venv.log"
    echo "$want" >"$DIR/venv.stamp"
    say "venv: offline install took $(took "$t") s"
}

cmd_build() {
    local reason t
    reason="$(why_not)"
    [ -z "$reason" ] || die "cannot build the OpenXR chroot: $reason"
    mkdir -p "$DIR"
    exec 9>"$DIR/build.lock"
    flock 9 # two builds at once would debootstrap into the same folder
    t="$(now)"
    # Unmount on the way out unless a running monado-service still needs the mounts.
    trap 'running || umount_all' EXIT
    build_base
    build_packages
    build_wheels
    build_venv
    running || umount_all
    trap - EXIT
    say "build: done in $(took "$t") s ($(du -sh "$DIR" 2>/dev/null | cut -f1) under $DIR)"
}

# --- runtime -------------------------------------------------------------------------------------------------

running() { [ -s "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

cmd_start() {
    [ -f "$DIR/venv.stamp" ] || die "the chroot is not built; run: $0 build"
    if running; then
        say "monado-service already running (pid $(cat "$PIDFILE"))"
        return
    fi
    mount_all
    mkdir -p "$ROOT$XDG" "$LOG"
    chmod 700 "$ROOT$XDG"
    rm -f "$ROOT$XDG"/monado_comp_ipc*
    local t
    t="$(now)"
    # setsid: its own process group, so a Ctrl-C in this shell does not take the runtime down mid-test.
    setsid chroot "$ROOT" /usr/bin/env -i PATH=/usr/bin:/bin HOME=/root XDG_RUNTIME_DIR="$XDG" \
        XRT_COMPOSITOR_NULL=1 SIMULATED_ENABLE=1 XRT_NO_STDIN=1 \
        SIMULATED_LEFT="$SIM_LEFT" SIMULATED_RIGHT="$SIM_RIGHT" monado-service \
        </dev/null >"$LOG/monado.log" 2>&1 &
    echo $! >"$PIDFILE"
    for _ in $(seq 100); do # up to 10 s
        [ -S "$ROOT$XDG/monado_comp_ipc" ] && break
        running || die "monado-service exited at start; see $LOG/monado.log"
        sleep 0.1
    done
    [ -S "$ROOT$XDG/monado_comp_ipc" ] || die "monado-service started but made no socket in 10 s; see $LOG/monado.log"
    say "monado-service up in $(took "$t") s (pid $(cat "$PIDFILE"), socket $XDG/monado_comp_ipc)"
}

cmd_stop() {
    if running; then
        local pid
        pid="$(cat "$PIDFILE")"
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null
        say "monado-service stopped"
    fi
    rm -f "$PIDFILE"
    [ -d "$ROOT" ] && umount_all
    return 0
}

cmd_run() {
    [ $# -gt 0 ] || die "usage: $0 run CMD [ARGS...]"
    [ -f "$DIR/venv.stamp" ] || die "the chroot is not built; run: $0 build"
    local mounted_here=0
    is_mounted "$ROOT/project" || mounted_here=1
    mount_all
    # Only undo what this call did: a `start` before us owns its mounts.
    [ "$mounted_here" = 1 ] && trap 'running || umount_all' EXIT
    # No bytecode or pytest cache written into the host's checkout from the chroot's Python.
    chroot "$ROOT" /usr/bin/env -i PATH="$VENV/bin:/usr/bin:/bin" HOME=/root LANG=C.UTF-8 \
        VIRTUAL_ENV="$VENV" XDG_RUNTIME_DIR="$XDG" PYTHONPATH=/project PYTHONPYCACHEPREFIX=/tmp/pycache XRT_LOG=warning \
        VRCAP_IN_OPENXR_CHROOT=1 VRCAP_OPENXR_SIM_CONTROLLERS="$SIM_LEFT,$SIM_RIGHT" CI="${CI:-}" TERM=dumb \
        /bin/sh -c 'cd /project && exec "$@"' sh "$@"
}

cmd_test() {
    local reason
    reason="$(why_not)"
    if [ -n "$reason" ]; then
        [ -n "${CI:-}" ] && die "CI needs the real OpenXR runtime tests, but: $reason"
        say "skipped the real-runtime OpenXR tests: $reason"
        return 0
    fi
    local t
    t="$(now)"
    # A separate process, so that a failed build is a return code here rather than an exit of this shell.
    if ! "$0" build; then
        [ -n "${CI:-}" ] && die "CI needs the real OpenXR runtime tests, but the chroot could not be built (above)"
        say "skipped: the real-runtime OpenXR tests need the chroot, which could not be built (above)"
        return 0
    fi
    say "test: build phase $(took "$t") s"
    trap 'cmd_stop' EXIT
    cmd_start
    t="$(now)"
    local rc=0
    cmd_run python -m pytest -p no:cacheprovider -q tests/capture/test_openxr_runtime.py "$@" || rc=$?
    say "test: pytest inside the chroot took $(took "$t") s (exit $rc)"
    return "$rc"
}

cmd_status() {
    echo "dir      $DIR"
    for s in base apt wheels venv; do
        if [ -f "$DIR/$s.stamp" ]; then
            printf '%-8s built (%s)\n' "$s" "$(cat "$DIR/$s.stamp")"
        else
            printf '%-8s not built\n' "$s"
        fi
    done
    if running; then echo "monado   running (pid $(cat "$PIDFILE"))"; else echo "monado   not running"; fi
    findmnt -rn -o TARGET | grep "^$ROOT/" || echo "mounts   none"
}

cmd_clean() {
    cmd_stop
    [ -d "$ROOT" ] && safe_wipe
    rm -rf "$WHEELS" "$DIR"/*.stamp "$DIR/pip-venv"
    say "cleaned $DIR"
}

case "${1:-}" in
build | start | stop | status | clean)
    "cmd_$1"
    ;;
run | test)
    sub="$1"
    shift
    "cmd_$sub" "$@"
    ;;
*)
    awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"
    exit 2
    ;;
esac
