#!/usr/bin/env bash
# The Debian 12 packages that the tests and the firmware build need, in one place: .ci/run calls
# this, and so does a developer once on a new machine (as root: apt-get).
#
#   sudo scripts/install-system-packages.sh
#
# Without them the Python suite still runs: each test that needs one skips with one line naming
# the package (and fails instead when CI is set).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

PACKAGES=(
    make gcc libc6-dev                          # firmware C core tests, simavr harness
    gcc-avr avr-libc binutils-avr arduino-core-avr   # the Uno firmware build
    simavr libsimavr-dev libelf-dev pkg-config  # the firmware run cycle-exact (sims/simavr)
    clang libclang-rt-14-dev                    # libFuzzer (make -C firmware fuzz)
    ngspice                                     # circuit physics (ngspice -b)
    libportaudio2                               # sounddevice's PortAudio
    pulseaudio pulseaudio-utils libasound2-plugins   # the audio loopback (.ci/pulse.sh)
)

if [ "$(id -u)" -ne 0 ]; then
    echo "install-system-packages.sh: needs root (apt-get): sudo $0" >&2
    exit 1
fi
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null
echo "install-system-packages.sh: ${#PACKAGES[@]} packages installed"
