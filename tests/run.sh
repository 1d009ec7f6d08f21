#!/bin/sh
# Runs every test against one build directory: the cmocka unit binaries,
# the black-box integration suite (pytest) on the real daemon, a smoke run
# of each fuzz target over its corpus, and a short soak.
# Prints one closing line: "total: N passed, N failed".
set -u
BUILD=${1:-build}
passed=0
failed=0

for t in "$BUILD"/tests/test_*; do
	[ -x "$t" ] || continue
	# A stuck binary fails (and says so) instead of hanging the suite.
	out=$(timeout -k 10 300 "$t" 2>&1)
	rc=$?
	printf '%s\n' "$out"
	if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
		echo "unit: $t timed out after 300s" >&2
		failed=$((failed + 1))
		continue
	fi
	p=$(printf '%s\n' "$out" | sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' | tail -n 1)
	f=$(printf '%s\n' "$out" | sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' | tail -n 1)
	passed=$((passed + ${p:-0}))
	failed=$((failed + ${f:-0}))
	if [ "$rc" -ne 0 ] && [ -z "$f" ]; then
		echo "unit: $t exited $rc" >&2
		failed=$((failed + 1))
	fi
done
echo "unit: $passed passed, $failed failed"

export CRUSH_BUILD="$BUILD"
# LeakSanitizer needs ptrace-free /proc access only; keep reports on stderr.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:exitcode=99}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1:exitcode=99}"
if [ -d tests/integration ]; then
	report=$(mktemp)
	/usr/bin/python3 -m pytest -q -p no:cacheprovider tests/integration -rfE 2>&1 | tee "$report"
	ip=$(grep -Eo '[0-9]+ passed' "$report" | tail -n 1 | cut -d' ' -f1)
	if_=$(grep -Eo '[0-9]+ (failed|error)' "$report" | awk '{s+=$1} END {print s+0}')
	grep -q ' passed\| failed\| error' "$report" || if_=$((if_ + 1))
	passed=$((passed + ${ip:-0}))
	failed=$((failed + ${if_:-0}))
	rm -f "$report"
fi

# Suites that close with their own "<name>: N passed, N failed" line.
tally() {
	line=$(grep -E "^$1: [0-9]+ passed, [0-9]+ failed" "$2" | tail -n 1)
	if [ -z "$line" ]; then
		echo "$1: no summary (exit $3)" >&2
		failed=$((failed + 1))
		return
	fi
	passed=$((passed + $(echo "$line" | sed 's/.*: \([0-9]*\) passed.*/\1/')))
	failed=$((failed + $(echo "$line" | sed 's/.*passed, \([0-9]*\) failed.*/\1/')))
}
if [ -f fuzz/run.sh ]; then
	report=$(mktemp)
	sh fuzz/run.sh --smoke 2>&1 | tee "$report"
	tally fuzz "$report" "$?"
	rm -f "$report"
fi
if [ -f tests/soak/soak.py ]; then
	report=$(mktemp)
	/usr/bin/python3 tests/soak/soak.py --build "$BUILD" --seconds 30 2>&1 | tee "$report"
	tally soak "$report" "$?"
	rm -f "$report"
fi

echo "total: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
