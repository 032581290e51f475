#!/usr/bin/env bash
# Start (once) a private PulseAudio server with a virtual microphone, for tests and CI on machines without a
# sound card. Idempotent: every piece is checked and only what is missing is (re)made, so running it again
# after a test unloaded the sink or killed the feeder repairs the set-up.
#
#   server   pulseaudio -D --exit-idle-time=-1 --system=false, all its state under $VRCAP_PULSE_DIR
#   sink     module-null-sink "vsink" (48 kHz mono); its monitor "vsink.monitor" is the default source
#   feeder   a silent `pacat ... /dev/zero` into vsink: without it the monitor delivers audio in late bursts
#            (first callback 0.7-1.7 s late); with it callbacks come every <= 24 ms (docs: FACTS.md)
#   ALSA     $HOME/.asoundrc (HOME = $VRCAP_PULSE_DIR) defines `pcm.vmic` = vsink.monitor
#
# Prints one line on stdout, `PULSE_SERVER=unix:<socket>`, for callers to export; everything else goes to
# stderr. Exits non-zero with a one-line reason when PulseAudio is not installed or does not come up.
set -euo pipefail

DIR="${VRCAP_PULSE_DIR:-/tmp/vrcap-pulse}"
RATE=48000
export HOME="$DIR"
export XDG_RUNTIME_DIR="$DIR/run"
export XDG_CONFIG_HOME="$DIR/config"
SOCKET="$XDG_RUNTIME_DIR/pulse/native"
export PULSE_SERVER="unix:$SOCKET"
FEEDER_PID="$DIR/feeder.pid"

die() {
    echo "pulseaudio.sh: $*" >&2
    exit 1
}

for tool in pulseaudio pactl pacat; do
    command -v "$tool" >/dev/null 2>&1 ||
        die "$tool not found; install: apt-get install -y --no-install-recommends pulseaudio pulseaudio-utils libasound2-plugins libportaudio2"
done

mkdir -p "$DIR" "$XDG_RUNTIME_DIR" "$XDG_CONFIG_HOME"
chmod 700 "$XDG_RUNTIME_DIR" # libpulse refuses a runtime dir others can read

# Two callers at once (two test processes) must not both start a server or a feeder.
exec 9>"$DIR/setup.lock"
flock -w 60 9 || die "another pulseaudio.sh held $DIR/setup.lock for 60 s"

server_up() { pactl info >/dev/null 2>&1; }

if ! server_up; then
    # As root PulseAudio prints "This program is not intended to be run as root": expected here, harmless.
    pulseaudio -D --exit-idle-time=-1 --system=false --log-target=file:"$DIR/pulseaudio.log" 2>>"$DIR/pulseaudio.err" 9>&- ||
        die "pulseaudio failed to start; see $DIR/pulseaudio.log and $DIR/pulseaudio.err"
    for _ in $(seq 50); do # up to ~5 s for the socket
        server_up && break
        sleep 0.1
    done
    server_up || die "pulseaudio started but $SOCKET does not answer; see $DIR/pulseaudio.log"
fi

sink_index() { pactl list short sinks | awk '$2 == "vsink" { print $1 }'; }

if [ -z "$(sink_index)" ]; then
    pactl load-module module-null-sink sink_name=vsink rate=$RATE channels=1 >/dev/null
fi
pactl set-default-source vsink.monitor

cat >"$HOME/.asoundrc" <<'EOF'
# Written by tools/ci/pulseaudio.sh: the virtual microphone as an ALSA device.
pcm.vmic { type pulse; device "vsink.monitor" }
ctl.vmic { type pulse }
EOF

# The feeder must be playing into vsink itself: when vsink is unloaded PulseAudio moves the feeder elsewhere,
# so "the process is alive" is not enough. A sink-input on vsink's index is the check.
feeding() {
    local idx
    idx="$(sink_index)"
    [ -n "$idx" ] && pactl list short sink-inputs | awk -v s="$idx" '$2 == s { found = 1 } END { exit !found }'
}

if ! feeding; then
    if [ -s "$FEEDER_PID" ]; then
        old="$(cat "$FEEDER_PID")"
        if grep -q pacat "/proc/$old/cmdline" 2>/dev/null; then
            kill "$old" 2>/dev/null || true
        fi
    fi
    setsid pacat --playback --device=vsink --raw --format=s16le --rate=$RATE --channels=1 \
        --client-name=vrcap-feeder /dev/zero </dev/null >/dev/null 2>>"$DIR/feeder.err" 9>&- &
    echo $! >"$FEEDER_PID"
    for _ in $(seq 50); do
        feeding && break
        sleep 0.1
    done
    feeding || die "the silent feeder (pacat into vsink) did not start; see $DIR/feeder.err"
fi

echo "PULSE_SERVER=$PULSE_SERVER"
