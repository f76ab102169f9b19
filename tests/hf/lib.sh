# Shared by tests/hf/*.sh (sourced after `bin` is set): the interop venv's Python, a scratch
# directory, failure counting and the exit-2 check.
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
py=${RINGTRAIN_INTEROP_PYTHON:-$repo/.venv-interop/bin/python}
# Skips (exit 77) without a Python that imports the given modules.
need_python() {
  if ! "$py" -c "import $1" 2>/dev/null; then
    echo "SKIP: no Python with $1 at $py (scripts/test.sh installs them)"
    exit 77
  fi
}
# A scratch directory, removed at exit, made the working directory.
enter_scratch() {
  work=$(mktemp -d "${TMPDIR:-/tmp}/ringtrain-$1.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  cd "$work" || exit 1
}
failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
# Exit code 2 and one line on stderr matching $2.
expect_user_error() {
  local what=$1 pattern=$2
  shift 2
  "$@" >out.txt 2>err.txt
  local rc=$?
  [ $rc -eq 2 ] || fail "$what: exit $rc, expected 2: $(tail -2 err.txt)"
  grep -q -- "$pattern" err.txt || fail "$what: message lacks '$pattern': $(cat err.txt)"
  [ "$(wc -l <err.txt)" -eq 1 ] || fail "$what: more than one line: $(cat err.txt)"
}
# The verdict line and exit code.
finish() {
  [ $failures -eq 0 ] && echo "$1: ok" || echo "$1: $failures failure(s)"
  [ $failures -eq 0 ]
}
