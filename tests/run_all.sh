#!/bin/sh
# Runs the C unit tests (ctest) and the busted specs under Lua 5.4, then prints one closing line
# "N passed, N failed" that counts both. Exit status: non-zero when anything failed.
# COCOLA_BUILD_DIR: the build folder tested (default build; .busted, the specs and bin/cocola read it
# too), e.g. build-asan through tests/sanitizers/run.sh.
cd "$(dirname "$0")/.." || exit 2
ctest_log=$(mktemp) busted_log=$(mktemp) busted_err=$(mktemp)
trap 'rm -f "$ctest_log" "$busted_log" "$busted_err"' EXIT

(cd "${COCOLA_BUILD_DIR:-build}" && ctest --output-on-failure) >"$ctest_log" 2>&1
ctest_rc=$?
cat "$ctest_log"
c_total=$(sed -n 's/.*tests passed, \([0-9]*\) tests failed out of \([0-9]*\).*/\2/p' "$ctest_log")
c_failed=$(sed -n 's/.*tests passed, \([0-9]*\) tests failed out of \([0-9]*\).*/\1/p' "$ctest_log")
c_total=${c_total:-0}
c_failed=${c_failed:-0}
[ "$ctest_rc" -ne 0 ] && [ "$c_failed" -eq 0 ] && c_failed=1

# stderr apart: progress bars of recipes under test must not run into the TAP lines
env -u LUA_PATH -u LUA_CPATH -u LUA_INIT busted --output=TAP "$@" >"$busted_log" 2>"$busted_err"
busted_rc=$?
[ "$busted_rc" -ne 0 ] && tail -n 40 "$busted_err"
grep -v '^ok ' "$busted_log"
b_ok=$(grep -c '^ok ' "$busted_log")
b_skip=$(grep -ci '^ok .*# skip' "$busted_log")
b_failed=$(grep -c '^not ok ' "$busted_log")
[ "$busted_rc" -ne 0 ] && [ "$b_failed" -eq 0 ] && b_failed=1
b_plan=$(sed -n 's/^1\.\.\([0-9]*\)$/\1/p' "$busted_log" | tail -n 1)
if [ -n "$b_plan" ] && [ "$b_plan" -ne $((b_ok + b_failed)) ]; then
  echo "busted planned $b_plan tests but $((b_ok + b_failed)) results were read"
  b_failed=$((b_failed + b_plan - b_ok - b_failed))
fi

passed=$((c_total - c_failed + b_ok - b_skip))
failed=$((c_failed + b_failed))
echo "C tests: $((c_total - c_failed))/$c_total passed; specs: $((b_ok - b_skip)) passed, $b_failed failed, $b_skip pending"
if [ "$b_skip" -gt 0 ]; then
  echo "$passed passed, $failed failed, $b_skip skipped"
else
  echo "$passed passed, $failed failed"
fi
[ "$failed" -eq 0 ]
