# Sourced by scripts/setup.sh and scripts/check-deploy.sh: venv_home NAME HASH prints where the
# environment NAME for lock hash HASH is built: NAME itself, or with NEUROBATCH_CACHE set (CI:
# .ci/run), $NEUROBATCH_CACHE/NAME-HASH with NAME made a link to it, so that a fresh clone reuses
# the environment of an unchanged lock. Built at its real path: pip writes the interpreter's path
# into every script it installs, so the environment works from any clone.
venv_home() {
  if [[ -z "${NEUROBATCH_CACHE:-}" ]]; then
    echo "$1"
    return
  fi
  local home="$NEUROBATCH_CACHE/${1#.}-${2:0:16}"
  mkdir -p "$NEUROBATCH_CACHE"
  if [[ "$(readlink "$1" 2>/dev/null || true)" != "$home" ]]; then
    rm -rf "$1"
    ln -s "$home" "$1"
  fi
  echo "$home"
}
