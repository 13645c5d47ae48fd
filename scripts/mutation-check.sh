#!/usr/bin/env bash
# Mutation check: every deliberate one-line bug listed in tests/mutations.txt (kernel rules, VJPs /
# JVPs, structured-derivative contractions, eNTK mode reductions) must make the always-on C++
# suite fail. For each mutation the script applies it to the source (the pattern must occur
# exactly once in its file, else it stops: keep the list in sync with the code), rebuilds
# ntk_tests, runs build/tests/cpp/ntk_tests --gtest_filter=-*MonteCarlo* (or the mutation's own
# filter), records KILLED (a test failed, crashed or timed out) or SURVIVED, and restores the file
# byte for byte (also on Ctrl-C or error, via a trap). It ends with a table and exits non-zero if
# a mutation survived, a pattern did not match exactly once, or a mutation did not compile.
#
# Usage: scripts/mutation-check.sh [BUILD_DIR] [ID...]
#   BUILD_DIR  build directory (default: build-mut); configured Release without benchmarks if absent
#   ID...      run only these mutations (default: all in the list)
# Environment:
#   MUTATIONS=path      list file (default: tests/mutations.txt)
#   JOBS=n              build parallelism (default: nproc)
#   TEST_TIMEOUT=s      seconds per test run before it counts as a failure (default: 600)
#   SKIP_BASELINE=1     skip the unmutated build + run that first checks the suite passes
#   LOG_DIR=path        where the per-mutation build and test logs go (default: BUILD_DIR/mutation-logs)
#
# Runtime: per mutation one incremental rebuild (the mutated .cpp, or the files that include a
# mutated header, plus relinking) and one suite run (~20 s): 15-40 s each, 8-16 min for the 28
# mutations on 2 shared cores, plus the baseline (a full build if BUILD_DIR is new). A final
# rebuild leaves the build directory matching the restored sources. Ctrl-C restores the file at
# once; a SIGTERM sent to the script alone restores it when the running build or test step ends.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

build=${1:-build-mut}
shift || true
want_ids=("$@")
list=${MUTATIONS:-tests/mutations.txt}
jobs=${JOBS:-$(nproc)}
test_timeout=${TEST_TIMEOUT:-600}
default_filter='-*MonteCarlo*'
log_dir=${LOG_DIR:-$build/mutation-logs}
tests_bin=$build/tests/cpp/ntk_tests

die() { echo "mutation-check: $*" >&2; exit 2; }
[[ -f $list ]] || die "no mutation list $list"

# ---- parse the list into parallel arrays ----
ids=() files=() finds=() repls=() descs=() filters=()
flush() {
  [[ -z ${m_id:-}${m_file:-}${m_find:-}${m_repl+x}${m_desc:-} ]] && return 0
  [[ -n ${m_id:-} && -n ${m_file:-} && -n ${m_find:-} && -n ${m_repl+x} && -n ${m_desc:-} ]] ||
    die "$list: incomplete block near line $lineno (needs id, file, find, replace, desc)"
  for x in "${ids[@]}"; do [[ $x == "$m_id" ]] && die "$list: duplicate id $m_id"; done
  ids+=("$m_id") files+=("$m_file") finds+=("$m_find") repls+=("$m_repl") descs+=("$m_desc")
  filters+=("${m_filter:-$default_filter}")
  unset m_id m_file m_find m_repl m_desc m_filter
}
lineno=0
while IFS= read -r line || [[ -n $line ]]; do
  lineno=$((lineno + 1))
  case $line in
    '#'*) ;;
    '') flush ;;
    'id: '*) m_id=${line#id: } ;;
    'file: '*) m_file=${line#file: } ;;
    'find: '*) m_find=${line#find: } ;;
    'replace: '*) m_repl=${line#replace: } ;;
    'replace:') m_repl= ;;
    'desc: '*) m_desc=${line#desc: } ;;
    'filter: '*) m_filter=${line#filter: } ;;
    *) die "$list:$lineno: unrecognized line: $line" ;;
  esac
done <"$list"
flush
((${#ids[@]} > 0)) || die "$list holds no mutations"

selected=()
if ((${#want_ids[@]} == 0)); then
  selected=("${!ids[@]}")
else
  for w in "${want_ids[@]}"; do
    found=
    for i in "${!ids[@]}"; do [[ ${ids[i]} == "$w" ]] && selected+=("$i") && found=1; done
    [[ -n $found ]] || die "no mutation with id '$w' in $list"
  done
fi

# Occurrences of a literal substring in a file (exactly, possibly several per line).
count_in() {
  FIND=$2 perl -0777 -ne 'my $c = () = /\Q$ENV{FIND}\E/g; print $c' "$1"
}

# Check every pattern before touching anything, so a stale list fails in seconds.
bad=0
for i in "${selected[@]}"; do
  f=${files[i]}
  if [[ ! -f $f ]]; then
    echo "mutation-check: [${ids[i]}] file $f does not exist" >&2
    bad=1
    continue
  fi
  c=$(count_in "$f" "${finds[i]}")
  if [[ $c != 1 ]]; then
    echo "mutation-check: [${ids[i]}] pattern occurs $c times in $f (must be exactly once): ${finds[i]}" >&2
    bad=1
  fi
  if [[ ${finds[i]} == "${repls[i]}" ]]; then
    echo "mutation-check: [${ids[i]}] replacement equals the pattern" >&2
    bad=1
  fi
done
((bad == 0)) || die "the mutation list is out of sync with the sources (see above); fix $list"

# ---- restore machinery ----
backup_dir=$(mktemp -d "${TMPDIR:-/tmp}/ntk-mutation.XXXXXX")
active_file=    # file currently mutated ('' when none)
active_clean=   # 1 if git saw it unmodified before mutating
restore() {
  [[ -n $active_file ]] || return 0
  # A plain copy (not cp -p): the new mtime makes the next build recompile the restored file.
  cat "$backup_dir/orig" >"$active_file"
  if ! cmp -s "$backup_dir/orig" "$active_file"; then
    echo "mutation-check: FAILED TO RESTORE $active_file; the original is in $backup_dir/orig" >&2
    exit 3
  fi
  if [[ $active_clean == 1 ]] && ! git diff --quiet -- "$active_file"; then
    echo "mutation-check: $active_file differs from git after restoring; the original is in $backup_dir/orig" >&2
    exit 3
  fi
  active_file=
}
on_exit() {
  local rc=$?
  restore
  rm -rf "$backup_dir"
  exit "$rc"
}
trap on_exit EXIT
trap 'echo "mutation-check: interrupted; restoring" >&2; exit 130' INT TERM HUP

# ---- build and test helpers ----
if [[ ! -f $build/CMakeCache.txt ]]; then
  echo "mutation-check: configuring $build"
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DNTK_BUILD_BENCH=OFF -DNTK_BUILD_TESTS=ON >/dev/null
fi
mkdir -p "$log_dir"
build_tests() { cmake --build "$build" --target ntk_tests -j"$jobs" >"$1" 2>&1; }
# Runs the suite; prints nothing, returns its exit status (124 on timeout).
run_tests() {
  local rc=0
  timeout --signal=KILL "$test_timeout" "$tests_bin" --gtest_filter="$1" --gtest_color=no >"$2" 2>&1 || rc=$?
  return "$rc"
}
# The first failing test of a log, or why there is none.
first_failure() {
  local log=$1 rc=$2 name
  name=$(grep -m1 -E '^\[  FAILED  \] [^ ]+' "$log" | sed -E 's/^\[  FAILED  \] ([^ ,]+).*/\1/' || true)
  local n
  n=$(grep -oE '^ *[0-9]+ FAILED TESTS?' "$log" | grep -oE '[0-9]+' | head -1 || true)
  if [[ -n $name ]]; then
    echo "$name (${n:-?} failed)"
  elif ((rc == 137 || rc == 124)); then
    echo "timeout in $(grep -E '^\[ RUN      \]' "$log" | tail -1 | sed -E 's/^\[ RUN      \] //')"
  else
    echo "crash rc=$rc in $(grep -E '^\[ RUN      \]' "$log" | tail -1 | sed -E 's/^\[ RUN      \] //')"
  fi
}

if [[ ${SKIP_BASELINE:-0} != 1 ]]; then
  echo "mutation-check: baseline build and run (unmutated)"
  build_tests "$log_dir/baseline.build.log" || die "baseline build failed (see $log_dir/baseline.build.log)"
  rc=0
  run_tests "$default_filter" "$log_dir/baseline.test.log" || rc=$?
  ((rc == 0)) || die "the unmutated suite fails ($(first_failure "$log_dir/baseline.test.log" "$rc")); fix it first"
fi

# ---- the mutations ----
results=() details=()
start_all=$SECONDS
for i in "${selected[@]}"; do
  id=${ids[i]} f=${files[i]}
  t0=$SECONDS
  printf 'mutation-check: [%s] %s: %s\n' "$id" "$f" "${descs[i]}"
  cp "$f" "$backup_dir/orig"
  active_clean=0
  git diff --quiet -- "$f" 2>/dev/null && active_clean=1
  active_file=$f
  FIND=${finds[i]} REPL=${repls[i]} perl -0777 -i -pe 's/\Q$ENV{FIND}\E/$ENV{REPL}/' "$f"
  if cmp -s "$backup_dir/orig" "$f" || [[ $(count_in "$f" "${repls[i]}") -lt 1 ]]; then
    restore
    die "[$id] applying the mutation changed nothing"
  fi
  if [[ $(diff "$backup_dir/orig" "$f" | grep -c '^[<>]') != 2 ]]; then
    restore
    die "[$id] the mutation changed more than one line"
  fi
  blog=$log_dir/$id.build.log tlog=$log_dir/$id.test.log
  if ! build_tests "$blog"; then
    results+=("BUILD-ERROR") details+=("does not compile, see $blog")
  else
    rc=0
    run_tests "${filters[i]}" "$tlog" || rc=$?
    if ((rc == 0)); then
      results+=("SURVIVED") details+=("all tests passed (${filters[i]})")
    else
      results+=("KILLED") details+=("$(first_failure "$tlog" "$rc")")
    fi
  fi
  restore
  printf 'mutation-check: [%s] %s: %s (%ds)\n' "$id" "${results[-1]}" "${details[-1]}" $((SECONDS - t0))
done

echo "mutation-check: rebuilding the restored sources"
build_tests "$log_dir/final.build.log" || echo "mutation-check: warning: final rebuild failed, see $log_dir/final.build.log" >&2

# ---- report ----
echo
printf '%-26s %-12s %-s\n' "MUTATION" "RESULT" "FIRST FAILING TEST / NOTE"
killed=0 survived=0 broken=0
for k in "${!selected[@]}"; do
  i=${selected[k]}
  printf '%-26s %-12s %s\n' "${ids[i]}" "${results[k]}" "${details[k]}"
  printf '%-26s %-12s   (%s: %s)\n' "" "" "${files[i]}" "${descs[i]}"
  case ${results[k]} in
    KILLED) killed=$((killed + 1)) ;;
    SURVIVED) survived=$((survived + 1)) ;;
    *) broken=$((broken + 1)) ;;
  esac
done
echo
echo "mutation-check: ${#selected[@]} mutations: $killed killed, $survived survived, $broken did not build ($(((SECONDS - start_all) / 60)) min; logs in $log_dir)"
((survived == 0 && broken == 0))
