#!/usr/bin/env bash
# Start (or reuse) a PulseAudio daemon with a null sink so PortAudio has a sound card to play
# into and a monitor source to record from -- the audio loopback CI and tests use.
#
# Idempotent: if the server at the socket already answers, it is reused (sink and defaults
# re-checked). Prints exactly one line on stdout, meant for eval:
#     eval "$(bash .ci/pulse.sh)"        # -> export PULSE_SERVER=unix:/tmp/hostctl-pulse.sock
# Everything else goes to stderr. Exit status 1 (with the reason) if no server can be started.
# Env: HOSTCTL_PULSE_SOCKET (default /tmp/hostctl-pulse.sock), HOSTCTL_PULSE_RATE (48000).
set -euo pipefail

SOCK=${HOSTCTL_PULSE_SOCKET:-/tmp/hostctl-pulse.sock}
RATE=${HOSTCTL_PULSE_RATE:-48000}
SINK=hostctl_null
# A private runtime dir: no clash with a desktop user's daemon or its pid file.
RUNTIME=${SOCK%.sock}.runtime
LOG=${SOCK%.sock}.log
export PULSE_SERVER="unix:$SOCK" PULSE_RUNTIME_PATH="$RUNTIME" PULSE_STATE_PATH="$RUNTIME"

say() { echo "pulse.sh: $*" >&2; }

for tool in pulseaudio pactl; do
    if ! command -v "$tool" >/dev/null; then
        say "$tool not found: apt-get install pulseaudio pulseaudio-utils libasound2-plugins"
        exit 1
    fi
done

answers() { timeout 5 pactl info >/dev/null 2>&1; }

if answers; then
    say "reusing the PulseAudio server at $SOCK"
else
    rm -f "$SOCK"
    mkdir -p "$RUNTIME"
    chmod 700 "$RUNTIME"
    # -n: no default.pa (it would probe for real cards); as root PulseAudio warns but runs.
    # soxr-vhq: the 44.1 kHz PortAudio default is resampled to the sink rate without the
    # ~1% loss at 15 kHz that the default speex-float-1 resampler has.
    pulseaudio -D -n --exit-idle-time=-1 --disallow-exit --use-pid-file=yes \
        --resample-method=soxr-vhq \
        --log-target="file:$LOG" \
        -L "module-native-protocol-unix auth-anonymous=1 socket=$SOCK" \
        -L "module-null-sink sink_name=$SINK rate=$RATE format=float32le" 2>>"$LOG" || true
    for _ in $(seq 1 50); do
        answers && break
        sleep 0.1
    done
    if ! answers; then
        say "PulseAudio did not answer on $SOCK within 5 s; log: $LOG"
        tail -n 5 "$LOG" >&2 2>/dev/null || true
        exit 1
    fi
    say "started PulseAudio with null sink $SINK at ${RATE} Hz on $SOCK"
fi

if ! pactl list short sinks | grep -q "	$SINK	"; then
    pactl load-module module-null-sink "sink_name=$SINK" "rate=$RATE" format=float32le >/dev/null
fi
pactl set-default-sink "$SINK"
pactl set-default-source "$SINK.monitor"
# Unity volume on sink and monitor so what is played comes back exactly.
pactl set-sink-volume "$SINK" 100% || true
pactl set-source-volume "$SINK.monitor" 100% || true

echo "export PULSE_SERVER=unix:$SOCK"
