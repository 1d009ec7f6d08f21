#!/bin/sh
# libFuzzer harnesses (see fuzz/README.md). Builds each fuzz/fuzz_<t>.c with
# clang + ASan/UBSan into build/fuzz/fuzz_<t>, then:
#   sh fuzz/run.sh N        fuzz each target for N seconds, one at a time
#   sh fuzz/run.sh --smoke  replay each checked-in corpus, then ~3 s of fuzzing
# New inputs go to build/fuzz/corpus-<t> (never into the repo); crash inputs
# to build/fuzz/crashes/. Prints one line per target, then
# "fuzz: N passed, N failed"; exits 1 when any target failed.
set -u
cd "$(dirname "$0")/.." || exit 2

OUT=build/fuzz
SMOKE_SECONDS=${FUZZ_SMOKE_SECONDS:-3}
TARGETS=${FUZZ_TARGETS:-"proto body path event watch utf8 http config flat"}

case "${1:-60}" in
--smoke) MODE=smoke ;;
*[!0-9]* | '' | 0)
	echo "usage: sh fuzz/run.sh SECONDS | --smoke" >&2
	exit 2
	;;
*) MODE=fuzz FUZZ_SECS=$1 ;;
esac

CC=${FUZZ_CC:-clang}
command -v "$CC" >/dev/null 2>&1 || CC=clang-14
CFLAGS="-g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
CPPFLAGS="-I. -D_GNU_SOURCE -DH2O_USE_LIBUV=0"

# Project sources each harness links (compiled with it, instrumented) and
# its libraries.
srcs() {
	case $1 in
	proto) echo proto/proto.c common/buf.c ;;
	body) echo supervisor/body.c common/flatjson.c common/utf8.c common/buf.c common/id.c common/path.c ;;
	path) echo common/path.c ;;
	event) echo worker/msg.c worker/watch.c worker/walk.c worker/unwatched.c worker/root.c worker/relpath.c common/utf8.c common/hmap.c common/log.c \
		common/path.c common/buf.c proto/proto.c ;;
	watch) echo worker/relpath.c common/path.c ;;
	utf8) echo common/utf8.c common/buf.c ;;
	http) echo supervisor/route.c ;;
	config) echo worker/config.c common/utf8.c common/buf.c ;;
	flat) echo common/flatjson.c common/utf8.c common/buf.c ;;
	esac
}
libs() {
	case $1 in
	*) echo -ljansson -luuid ;;
	esac
}
maxlen() {
	case $1 in
	proto) echo 16384 ;;
	path) echo 8193 ;; # PATH_MAX * 2 + the prefix byte
	watch) echo 12288 ;;
	*) echo 8192 ;;
	esac
}

# Rebuilds when the binary is missing or older than any source or header.
build() {
	bin=$OUT/fuzz_$1
	if [ -x "$bin" ] && [ -z "$(find fuzz/fuzz_"$1".c fuzz/check.h fuzz/run.sh common proto supervisor worker \
		\( -name '*.c' -o -name '*.h' -o -name run.sh \) -newer "$bin" 2>/dev/null | head -n 1)" ]; then
		return 0
	fi
	# shellcheck disable=SC2046,SC2086
	$CC $CFLAGS $CPPFLAGS fuzz/fuzz_"$1".c $(srcs "$1") $(libs "$1") -o "$bin" >"$OUT/logs/$1.build" 2>&1
}

# The "stat::name: value" final stat of log $1.
finalstat() {
	sed -n "s/^stat::$2: *//p" "$1" | tail -n 1
}

mkdir -p "$OUT/logs" "$OUT/crashes"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export ASAN_OPTIONS="${FUZZ_ASAN_OPTIONS:-detect_leaks=1}"
passed=0
failed=0
for t in $TARGETS; do
	log=$OUT/logs/$t.log
	seeds=fuzz/corpus/$t
	scratch=$OUT/corpus-$t
	mkdir -p "$scratch"
	[ -d "$seeds" ] || seeds=""
	if ! build "$t"; then
		cat "$OUT/logs/$t.build"
		echo "fuzz: $t FAILED: does not build (see $OUT/logs/$t.build)"
		failed=$((failed + 1))
		continue
	fi
	bin=$OUT/fuzz_$t
	opts="-timeout=10 -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix=$OUT/crashes/$t-"
	fopts="-max_len=$(maxlen "$t")" # not for replays: it would cut inputs
	[ -f fuzz/"$t".dict ] && fopts="$fopts -dict=fuzz/$t.dict"
	: >"$log"
	rc=0
	replayed=""
	if [ "$MODE" = smoke ]; then
		# Regression: every checked-in input, each run whole once.
		if [ -n "$seeds" ] && [ -n "$(find "$seeds" -type f | head -n 1)" ]; then
			# shellcheck disable=SC2046,SC2086
			"$bin" $opts $(find "$seeds" -type f | sort) >>"$log" 2>&1 || rc=$?
			[ "$rc" -ne 0 ] && replayed=$(sed -n 's/^Running: \(.*\)$/\1/p' "$log" | tail -n 1)
		fi
		secs=$SMOKE_SECONDS
		# A fresh scratch dir: the smoke's time stays the same however
		# much earlier runs have found.
		scratch=$OUT/smoke-$t
		rm -rf "$scratch"
		mkdir -p "$scratch"
	else
		secs=$FUZZ_SECS
	fi
	if [ "$rc" -eq 0 ]; then
		# shellcheck disable=SC2086
		"$bin" $opts $fopts -max_total_time="$secs" "$scratch" $seeds >>"$log" 2>&1 || rc=$?
	fi
	if [ "$rc" -ne 0 ]; then
		# The gist: the failed CHECK or sanitizer error, project frames, summary.
		grep -E 'CHECK failed|ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error:' "$log" | head -n 3
		grep -E '#[0-9]+ 0x[0-9a-f]+ in [^ ]+ [^ ]*/(fuzz|common|proto|supervisor|worker)/[^ ]+\.c' "$log" |
			head -n 8
		grep '^SUMMARY' "$log" | head -n 1
		if [ -n "$replayed" ]; then
			what="regression input $replayed"
		else
			what="crash input $(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)"
		fi
		echo "fuzz: $t FAILED (exit $rc): $what; log $log"
		failed=$((failed + 1))
		continue
	fi
	cov=$(sed -n 's/.* cov: \([0-9]*\) ft: \([0-9]*\) corp: \([0-9]*\).*/\1 \2 \3/p' "$log" | tail -n 1)
	# shellcheck disable=SC2086
	set -- $cov
	echo "fuzz: $t ok: $(finalstat "$log" number_of_executed_units) runs in ${secs}s," \
		"$(finalstat "$log" average_exec_per_sec) exec/s, cov ${1:-?}, ft ${2:-?}, corpus ${3:-?}" \
		"(+$(finalstat "$log" new_units_added) new in $scratch)"
	passed=$((passed + 1))
done
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
