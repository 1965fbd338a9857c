#!/usr/bin/env bash
# Fetch Triton's perf_analyzer 2.60 and, for a system older than its glibc 2.38 (Debian 12 has
# 2.36), a newer C runtime to start it with, without touching the system (issue #26, item 7).
#
#   bench/perf_analyzer_setup.sh [DIR]      # default DIR: runs/perf_analyzer
#
# Into DIR:
#   wheel/perf_analyzer/bin/perf_analyzer   from PyPI's perf-analyzer 2.60.0 wheel (pip refuses to
#                                           install a manylinux_2_38 wheel here, so it is
#                                           downloaded for that platform and unzipped)
#   runtime/                                Debian trixie's libc6, libstdc++6 and libgcc-s1,
#                                           unpacked with dpkg-deb (nothing installed)
# bench/ecosystem/perf_analyzer.py then starts it as
#   DIR/runtime/usr/lib64/ld-linux-x86-64.so.2 --library-path DIR/runtime/usr/lib/x86_64-linux-gnu \
#       DIR/wheel/perf_analyzer/bin/perf_analyzer ...
# On a system with glibc >= 2.38, `pip install perf-analyzer==2.60.0` is enough.
set -euo pipefail
DIR="${1:-runs/perf_analyzer}"
mkdir -p "$DIR/wheel" "$DIR/apt/lists/partial" "$DIR/debs" "$DIR/runtime"
DIR="$(cd "$DIR" && pwd)"

python3 -m pip download --no-deps --only-binary=:all: --platform manylinux_2_38_x86_64 \
  "perf-analyzer==2.60.0" -d "$DIR/wheel"
python3 -m zipfile -e "$DIR"/wheel/perf_analyzer-2.60.0-*.whl "$DIR/wheel"
chmod +x "$DIR/wheel/perf_analyzer/bin/perf_analyzer"

echo "deb http://deb.debian.org/debian trixie main" > "$DIR/apt/sources.list"
APT=(-o "Dir::Etc::SourceList=$DIR/apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
     -o "Dir::State::Lists=$DIR/apt/lists" -o Debug::NoLocking=1)
apt-get -q "${APT[@]}" update
cd "$DIR/debs"
for pkg in libc6 libstdc++6 libgcc-s1; do
  version="$(apt-cache "${APT[@]}" policy "$pkg" | awk '/Candidate/ {print $2; exit}')"
  apt-get -q "${APT[@]}" download "$pkg:amd64=$version"
done
for deb in *.deb; do dpkg-deb -x "$deb" "$DIR/runtime"; done
"$DIR/runtime/usr/lib64/ld-linux-x86-64.so.2" \
  --library-path "$DIR/runtime/usr/lib/x86_64-linux-gnu" \
  "$DIR/wheel/perf_analyzer/bin/perf_analyzer" --version 2>&1 | head -1 || true
echo "perf_analyzer ready in $DIR"
