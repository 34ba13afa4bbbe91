# The two set-up commands of the README. Both install what they need first, so a fresh clone works.
PYTHON ?= python3
PIP = $(PYTHON) -m pip install --disable-pip-version-check -q

.PHONY: install install-test demo test test-fast jvm-deps

install:
	$(PIP) -e ".[all]"

# mediapipe (a real client of our .tflite files in the tests) pins absl-py 2.x, tfmot 0.8.1 asks for 1.x;
# pip cannot resolve both in one go, so mediapipe goes in second (tfmot runs fine with absl-py 2).
install-test: install jvm-deps
	$(PIP) -e ".[all,test]"
	$(PIP) "mediapipe==1.2.2"

# Kotlin compiler and JUnit 4 from Debian for the Android demo's pure-logic unit tests (root only; skipped otherwise).
jvm-deps:
	@if ! command -v kotlinc >/dev/null 2>&1 || [ ! -f /usr/share/java/junit4.jar ]; then \
		if [ "$$(id -u)" = 0 ]; then (apt-get update -qq && apt-get install -y -qq kotlin junit4 >/dev/null) \
			|| echo "warning: could not install kotlin/junit4; the JVM tests will be skipped"; \
		else echo "warning: not root, cannot apt-get kotlin/junit4; the JVM tests will be skipped"; fi; \
	fi

# The main job end to end on built-in defaults (nothing downloaded).
demo: install
	bash benchmarks/quickstart.sh

# Every test, one file per worker process on each core (a file's module fixtures are made once).
test: install-test
	$(PYTHON) -m pytest -q -n auto --dist loadfile

# The fast tier: no conversion, training, sweep or official import (under 2 minutes here).
test-fast: install-test
	$(PYTHON) -m pytest -q -m "not slow"
