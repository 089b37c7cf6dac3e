#!/usr/bin/env bash
# Hostile-peer benchmarks, one after another (about 3 minutes): figures, not pass/fail.
#   bench-hostile/slowloris.sh       an honest chunk request while the chunk server is attacked
#   bench-hostile/listener-flood.sh  how soon an honest peer is listed while the listener is flooded
#   bench-hostile/silent-holders.sh  a download beside silent fake holders
# Each script says what it measures; they use only 127.0.0.x and stop what they start by PID.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$(dirname "${BASH_SOURCE[0]}")/.."
build_release chunk-server announcer listener downloader
for scenario in slowloris listener-flood silent-holders; do
    printf '\n######## %s\n' "$scenario"
    "./scripts/bench-hostile/$scenario.sh"
done
