# Sourced by kafka.sh and packages/pipeline/bench/compare/jars/fetch-jars.sh.
#
# maven_fetch <pom> <libs dir> <jar that must arrive (a glob)>: Maven's copy-dependencies of the
# pom's runtime classpath into a scratch dir next to <libs dir>, moved into place only once Maven
# succeeded and the jar is there, so an interrupted fetch never looks complete.
maven_fetch() {
  local pom=$1 libs=$2 required=$3 tmp
  local parent
  parent=$(dirname "$libs")
  rm -rf "$parent"/libs.partial.*
  tmp=$(mktemp -d "$parent/libs.partial.XXXXXX")
  # shellcheck disable=SC2064 # $tmp is local: expanded now, not when the trap runs
  trap "rm -rf '$tmp'" EXIT
  # With -q Maven prints only errors; strip the colour codes Maven 3.8 emits even in batch mode.
  "${MVN:-mvn}" -B -q -f "$pom" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$tmp" 2>&1 |
    sed "s/$(printf '\033')\[[0-9;]*m//g" >&2
  if ! compgen -G "$tmp/$required" >/dev/null; then
    echo "maven finished but $required is missing" >&2
    return 1
  fi
  chmod 755 "$tmp" # mktemp -d creates it 0700
  rm -rf "$libs"
  mv "$tmp" "$libs"
  trap - EXIT
}
