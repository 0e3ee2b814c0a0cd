#!/usr/bin/env bash
# Downloads the classpaths `pnpm bench:compare` runs on the JVM, once, into the gitignored .cache/:
#   kafka-tools   Kafka's ProducerPerformance / ConsumerPerformance / EndToEndLatency (kafka-tools.pom.xml)
#   debezium      Kafka Connect standalone + Debezium's PostgreSQL connector (debezium.pom.xml)
# Like scripts/kafka/kafka.sh fetch, through the same maven_fetch (scripts/kafka/maven-fetch.sh).
#
# Usage: fetch-jars.sh kafka-tools|debezium   (prints the directory holding the jars)
# Environment: BENCH_JARS_DIR=<repo>/.cache/bench-jars   MVN=mvn
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/../../../../.." && pwd)
NAME=${1:?usage: fetch-jars.sh kafka-tools|debezium}
POM="$SCRIPT_DIR/$NAME.pom.xml"
[[ -f $POM ]] || { echo "fetch-jars: no $POM" >&2; exit 2; }
MVN=${MVN:-mvn}
# shellcheck source=../../../../../scripts/kafka/maven-fetch.sh
source "$REPO_ROOT/scripts/kafka/maven-fetch.sh"

CACHE_DIR="${BENCH_JARS_DIR:-$REPO_ROOT/.cache/bench-jars}/$NAME"
LIBS="$CACHE_DIR/libs"
MARKER="$CACHE_DIR/.fetched"
mkdir -p "$CACHE_DIR"

# Two benches started at once must not download twice; the kernel drops the lock when the holder dies.
if command -v flock >/dev/null 2>&1; then
  exec 8>"$CACHE_DIR/.lock"
  flock 8
fi

# The marker records the pom it was fetched from, so editing a version refetches.
if [[ -f $MARKER ]] && cmp -s "$MARKER" "$POM"; then
  echo "$LIBS"
  exit 0
fi
command -v "$MVN" >/dev/null 2>&1 || { echo "fetch-jars: maven ('$MVN') is needed once to download $NAME" >&2; exit 1; }
echo "fetch-jars: fetching $NAME from Maven Central into $LIBS (one-time)..." >&2
maven_fetch "$POM" "$LIBS" "*.jar"
cp "$POM" "$MARKER"
echo "fetch-jars: $(find "$LIBS" -name '*.jar' | wc -l | tr -d ' ') jars ($(du -sh "$LIBS" | cut -f1))" >&2
echo "$LIBS"
