#!/usr/bin/env bash
# Compiles the app's pure-logic module (core/: no Android imports) with Debian's kotlinc and runs its
# JUnit 4 tests on the JVM. Needs: apt-get install kotlin junit4 (and a JDK, 17 here).
#
#   android_demo/run_jvm_tests.sh [MODEL_CARD.json ...]
#
# Cards given (written by `edge-deeplab export-android`) are parsed by the app's own card reader in
# ExportedCardsTest. Exit status: 0 when every test passed, 1 on a test failure, 2 when a tool is
# missing or the code does not compile.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
core="$here/core/src"
java_dir=${JAVA_LIBS:-/usr/share/java}

die() { echo "run_jvm_tests: $*" >&2; exit 2; }
command -v kotlinc >/dev/null || die "kotlinc not found (apt-get install kotlin)"
command -v java >/dev/null || die "java not found (apt-get install openjdk-17-jdk-headless)"
for jar in kotlin-stdlib junit4 hamcrest-core; do
  [ -f "$java_dir/$jar.jar" ] || die "$java_dir/$jar.jar not found (apt-get install kotlin junit4)"
done
cp="$java_dir/kotlin-stdlib.jar:$java_dir/junit4.jar:$java_dir/hamcrest-core.jar"

cards=()
for card in "$@"; do
  [ -f "$card" ] || die "model card $card not found"
  cards+=("$(cd "$(dirname "$card")" && pwd)/$(basename "$card")")
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

mapfile -t sources < <(find "$core/main/kotlin" "$core/test/kotlin" -name '*.kt' | sort)
# Test classes: one per *Test.kt file, named after it, in the package its first line declares.
tests=()
while IFS= read -r f; do
  pkg=$(sed -n 's/^package \([A-Za-z0-9_.]*\).*/\1/p' "$f" | head -n 1)
  tests+=("${pkg:+$pkg.}$(basename "$f" .kt)")
done < <(find "$core/test/kotlin" -name '*Test.kt' | sort)

# (the version from the package manager: `kotlinc -version` costs another JVM start)
version=$(dpkg-query -W -f='${Version}' kotlin 2>/dev/null || echo "version unknown")
echo "run_jvm_tests: compiling ${#sources[@]} Kotlin files with kotlinc ($version)"
# One kotlinc call for everything: the compiler takes seconds to start.
if ! kotlinc -nowarn -jvm-target 1.8 -cp "$cp" -d "$work/classes" "${sources[@]}" 2> "$work/kotlinc.log"; then
  grep -v -e 'Xverify:none' -e '^warning:' "$work/kotlinc.log" >&2 || true
  die "compilation failed"
fi

if [ ${#cards[@]} -eq 0 ]; then
  echo "run_jvm_tests: running ${#tests[@]} test classes (no exported cards given: ExportedCardsTest is skipped)"
else
  echo "run_jvm_tests: running ${#tests[@]} test classes with ${#cards[@]} exported card(s)"
fi
cards_prop=$(IFS=:; echo "${cards[*]:-}")
set +e
java -Dedgedeeplab.cards="$cards_prop" -cp "$work/classes:$cp" org.junit.runner.JUnitCore "${tests[@]}" \
  | tee "$work/junit.log"
status=${PIPESTATUS[0]}
set -e
if [ "$status" -eq 0 ]; then
  echo "run_jvm_tests: PASSED ($(grep -o 'OK ([0-9]* tests\?)' "$work/junit.log"))"
else
  echo "run_jvm_tests: FAILED ($(grep -o 'Tests run: [0-9]*,  Failures: [0-9]*' "$work/junit.log"))" >&2
  exit 1
fi
