#!/bin/sh
# SPDX-License-Identifier: MIT
# Regenerates the build system from configure.ac and Makefile.am.
set -e
cd "$(dirname "$0")"
mkdir -p build-aux m4
autoreconf --install --force
# The TAP driver runs our Check programs (their output is TAP, see tests/lib/check-main.c).
cp -f "$(automake --print-libdir)/tap-driver.sh" build-aux/tap-driver.sh
