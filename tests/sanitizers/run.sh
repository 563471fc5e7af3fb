#!/bin/bash
# tests/sanitizers/run.sh address|thread [busted arguments]
#   address: the C tests and the busted specs against build-asan/ (AddressSanitizer + UBSan, leak
#            checking on); without arguments the whole suite, as tests/run_all.sh runs it.
#   thread:  the threaded parts against build-tsan/ (ThreadSanitizer): the C tests and the specs of
#            tests/sanitizers/tsan_specs.txt (or the busted arguments given).
# The C test programs link the sanitizer's runtime; the Lua processes (busted, the cocola commands,
# the recipes' workers the specs start) run <build>/sanitizer-bin/lua5.4, an interpreter linked with
# it (tests/sanitizers/lua_main.c), put first on PATH; other programs (sh, gnuplot) are not touched.
# Every report goes to a file under <build>/sanitizer-logs/ besides failing its process: a report in
# a subprocess whose failure a spec expected (an error exit) still fails the run. Prints the closing
# line of tests/run_all.sh, "N passed, N failed[, N skipped]", with one more failure per report
# file. Exit status: non-zero when anything failed.
cd "$(dirname "$0")/../.." || exit 2
mode=${1:-address}
shift
here=$PWD/tests/sanitizers
case "$mode" in
  address)
    build=build-asan
    ;;
  thread)
    build=build-tsan
    ;;
  *)
    echo "usage: $0 address|thread [busted arguments]" >&2
    exit 2
    ;;
esac
if [ ! -f "$build/cocola/core.so" ] || [ ! -x "$build/sanitizer-bin/lua5.4" ]; then
  echo "$build/ is not built (make test-asan / make test-tsan build it)" >&2
  exit 2
fi
logs=$PWD/$build/sanitizer-logs
rm -rf "$logs"
mkdir -p "$logs"

# exitcode 86: a report is never mistaken for the status 1 of an expected error
common="halt_on_error=1:exitcode=86:log_path=$logs/report"
# use_tls=0: LLVM 14's leak checker crashes reading the dynamic TLS of threads on glibc 2.36
# (Debian 12; core.so's thread-locals are dynamic TLS); TLS blocks are then not scanned as roots,
# which can only add reports, never hide one
export ASAN_OPTIONS="$common:detect_leaks=1"
# (LSan reads one suppressions file: tests/fuzz/lsan.supp's and lsan.supp's entries joined)
cat tests/fuzz/lsan.supp "$here/lsan.supp" >"$logs/../lsan.supp"
export LSAN_OPTIONS="suppressions=$PWD/$build/lsan.supp:print_suppressions=0:use_tls=0"
export UBSAN_OPTIONS="$common:print_stacktrace=1"
# ignore_noninstrumented_modules: what uninstrumented libraries (libomp, OpenBLAS, libsndfile) do
# through TSan's interceptors is not checked, as Archer asks; cocola's own accesses all are
# halt_on_error=0 for TSan: every race of a run is reported (a process with one still exits 86)
export TSAN_OPTIONS="$common:halt_on_error=0:second_deadlock_stack=1:ignore_noninstrumented_modules=1:suppressions=$here/tsan.supp"
export COCOLA_BUILD_DIR=$build PATH=$PWD/$build/sanitizer-bin:$PATH
if [ "$mode" = thread ]; then
  # Archer: the OpenMP runtime's tool that tells TSan what libomp's barriers, locks and tasks order
  # (without it every parallel region is a race); the TSan build links LLVM's libomp, not libgomp
  OMP_TOOL_LIBRARIES=$(cd "$(clang -print-resource-dir)/../.." && pwd)/libarcher.so
  export OMP_TOOL_LIBRARIES
  if [ ! -f "$OMP_TOOL_LIBRARIES" ]; then
    echo "no Archer at $OMP_TOOL_LIBRARIES (libomp-dev: make fuzz-deps)" >&2
    exit 2
  fi
fi

if [ "$mode" = thread ] && [ $# -eq 0 ]; then
  mapfile -t specs < <(grep -v -E '^(#|$)' "$here/tsan_specs.txt")
  set -- "${specs[@]}"
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
sh tests/run_all.sh "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -1)
passed=$(echo "$line" | sed -n 's/^\([0-9]*\) passed.*/\1/p')
failed=$(echo "$line" | sed -n 's/^[0-9]* passed, \([0-9]*\) failed.*/\1/p')
skipped=$(echo "$line" | sed -n 's/.*failed, \([0-9]*\) skipped.*/\1/p')
reports=0
for f in "$logs"/report.*; do
  [ -f "$f" ] || continue
  # a process that only printed the sanitizer's notes (no report) leaves an empty or note-only file
  grep -q -E '(ERROR|WARNING): [A-Za-z]*Sanitizer|runtime error:' "$f" || continue
  reports=$((reports + 1))
  echo "== $f"
  head -n 60 "$f"
done
echo "$mode sanitizer: $reports report file(s) in $logs"
failed=$(( ${failed:-1} + reports ))
[ -z "$line" ] && failed=$((failed + 1))
if [ -n "$skipped" ]; then
  echo "${passed:-0} passed, $failed failed, $skipped skipped"
else
  echo "${passed:-0} passed, $failed failed"
fi
[ "$rc" -eq 0 ] && [ "$failed" -eq 0 ]
