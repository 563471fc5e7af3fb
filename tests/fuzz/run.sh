#!/bin/bash
# tests/fuzz/run.sh SECONDS — replays tests/fuzz/regressions/<harness>/ through each libFuzzer harness
# of build-fuzz/, then fuzzes each for SECONDS from its seed corpora (tests/fuzz/corpus/ and the spec
# fixtures) with its dictionary; new inputs go to build-fuzz/corpus/<harness>/, crashing inputs to
# build-fuzz/crashes/. Prints per harness the executions, CPU seconds, coverage (cov: edges, ft:
# features) and crashes, and a closing line "N passed, N failed, 0 skipped" (one item per harness:
# a crash or a failed replay fails it). Exit status: non-zero when any failed.
cd "$(dirname "$0")/../.." || exit 2
secs=${1:-60}
B=build-fuzz
mkdir -p "$B/crashes"
passed=0 failed=0 total_exec=0 total_cpu=0
printf '%-12s %12s %8s %8s %8s %8s\n' harness executions cpu_s cov ft crashes
for spec in "fuzz_zip:zip:ckpt" "fuzz_ckpt:zip:ckpt" "fuzz_pickle:pickle:pickle" "fuzz_audio:audio:audio"; do
  IFS=: read -r h dict corpus <<<"$spec"
  bin=$B/$h
  if [ ! -x "$bin" ]; then
    echo "$h: not built ($bin)"
    failed=$((failed + 1))
    continue
  fi
  seeds=(tests/fuzz/corpus/"$corpus")
  [ "$corpus" = ckpt ] && seeds=(spec/fixtures/ckpt)
  mkdir -p "$B/corpus/$h"
  log=$B/$h.log
  ok=1
  # regressions first: each saved input must now run clean
  if [ -d "tests/fuzz/regressions/$h" ] && [ -n "$(ls -A "tests/fuzz/regressions/$h")" ]; then
    if ! LSAN_OPTIONS=suppressions=tests/fuzz/lsan.supp:print_suppressions=0 "$bin" -runs=0 tests/fuzz/regressions/"$h"/* >"$B/$h.replay.log" 2>&1; then
      echo "$h: a regression input fails again:"
      tail -n 30 "$B/$h.replay.log"
      ok=0
    fi
  fi
  LSAN_OPTIONS=suppressions=tests/fuzz/lsan.supp:print_suppressions=0 /usr/bin/time -o "$B/$h.time" -f '%U %S' \
    "$bin" "$B/corpus/$h" "${seeds[@]}" -dict="tests/fuzz/$dict.dict" -max_total_time="$secs" -print_final_stats=1 \
    -timeout=20 -rss_limit_mb=2048 -malloc_limit_mb=2048 -artifact_prefix="$B/crashes/$h-" >"$log" 2>&1
  echo "rc=$?" >>"$log"
  cpu=$(tail -n 1 "$B/$h.time" | awk '{printf "%.1f", $1 + $2}')
  grep -q '^rc=0$' "$log" || ok=0
  execs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$log" | tail -n 1)
  covline=$(grep -E '^#[0-9]+.*cov: [0-9]+' "$log" | tail -n 1)
  cov=$(echo "$covline" | sed -n 's/.*cov: \([0-9]*\).*/\1/p')
  ft=$(echo "$covline" | sed -n 's/.*ft: \([0-9]*\).*/\1/p')
  crashes=0
  if [ "$ok" -eq 0 ]; then
    crashes=1
    grep -E '^(==[0-9]+==ERROR|SUMMARY|.*runtime error)' "$log" | head -n 5
    grep -E 'Test unit written to' "$log" | tail -n 1
  fi
  printf '%-12s %12s %8s %8s %8s %8s\n' "$h" "${execs:-0}" "${cpu:-0}" "${cov:-?}" "${ft:-?}" "$crashes"
  total_exec=$((total_exec + ${execs:-0}))
  total_cpu=$(awk -v a="$total_cpu" -v b="${cpu:-0}" 'BEGIN { printf "%.1f", a + b }')
  if [ "$ok" -eq 1 ]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
done
echo "fuzz: $total_exec executions in $total_cpu CPU seconds (${secs} s per harness)"
echo "$passed passed, $failed failed, 0 skipped"
[ "$failed" -eq 0 ]
