"""The Android path of `edge-deeplab bench`, against a stand-in `adb` first on PATH.

No phone is attached where these tests run. The stand-in answers `adb devices`, `getprop`, `push`,
`shell chmod` and `shell /data/local/tmp/benchmark_model ...` by replaying benchmark_model output in
the formats its builds print (taken from real runs published in TensorFlow Lite issues and vendor
guides; numbers kept as printed), on stdout or stderr, and logs every call it gets.
"""
import json
import os
import stat
import sys
import textwrap

import pytest

import tiny_tflite
from edge_deeplab.bench.phone import parse_benchmark_output
from edge_deeplab.cli import main

# Current builds: INFO: prefix, percentiles, peak memory via periodic monitoring.
MODERN = """\
INFO: STARTING!
INFO: Log parameter values verbosely: [0]
INFO: Num threads: [4]
INFO: Graph: [/data/local/tmp/edge_deeplab/model.tflite]
INFO: Use xnnpack: [1]
INFO: Loaded model /data/local/tmp/edge_deeplab/model.tflite
INFO: Created TensorFlow Lite XNNPACK delegate for CPU.
INFO: The input model file size (MB): 13.9193
INFO: Initialized session in 6.395ms.
INFO: Running benchmark for at least 5 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
INFO: count=153 first=2761 curr=2885 min=2605 max=18080 avg=3243.58 std=2165 p5=2630 median=2761 p95=5331

INFO: Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
INFO: count=337 first=2881 curr=2703 min=2605 max=20356 avg=2942.27 std=1190 p5=2647 median=2781 p95=3169

INFO: Inference timings in us: Init: 6395, First inference: 2761, Warmup (avg): 3243.58, Inference (avg): 2942.27
INFO: Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the actual memory footprint of the model at runtime. Take the information at your discretion.
INFO: Memory footprint delta from the start of the tool (MB): init=39.4531 overall=40.8281
INFO: Overall peak memory footprint (MB) via periodic monitoring: 93.2383
INFO: Memory status at the end of exeution:
INFO: - VmRSS              : 13 MB
"""

# No percentiles; a single warm-up run (count=1 curr=..); averages in scientific notation.
SCIENTIFIC = """\
INFO: Use xnnpack: [0]
INFO: Loaded model /data/local/tmp/edge_deeplab/model.tflite
INFO: The input model file size (MB): 67.3128
INFO: Initialized session in 6.418ms.
INFO: Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
INFO: count=1 curr=1041765

INFO: Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
INFO: count=50 first=977738 curr=964908 min=911877 max=1112273 avg=971535 std=39112

INFO: Inference timings in us: Init: 6418, First inference: 1041765, Warmup (avg): 1.04176e+06, Inference (avg): 971535
INFO: Memory footprint delta from the start of the tool (MB): init=6.14844 overall=109.848
"""

# Older builds: stderr, no INFO: prefix, the 'Average inference timings' summary ('no stats' label).
OLD = """\
STARTING!
Min num runs: [10]
Num threads: [2]
Graph: [/data/local/tmp/edge_deeplab/model.tflite]
Use nnapi : [0]
Loaded model /data/local/tmp/edge_deeplab/model.tflite
resolved reporter
Initialized session in 9.933ms
Running benchmark for at least 4 iterations and at least 0.5 seconds
count=7 first=127425 curr=66709 min=66709 max=127425 avg=76605.9 std=20944

Running benchmark for at least 10 iterations and at least 1 seconds
count=15 first=66753 curr=66800 min=66699 max=66838 avg=66767.6 std=39

Average inference timings in us: Warmup: 76605.9, Init: 9933, no stats: 66767.6
"""

# Every run took the same time: 'count=N curr=X(all same)' (coarse timers); old summary with 'Inference:'.
ALL_SAME = """\
Initialized session in 4.183ms
Running benchmark for at least 4 iterations and at least 0.5 seconds
count=13 curr=38000(all same)

Running benchmark for at least 10 iterations and at least 1 seconds
count=25 curr=37000(all same)

Average inference timings in us: Warmup: 38000, Init: 4183, Inference: 37000
"""

# Through logcat: each line carries a logcat prefix.
LOGCAT = """\
07-08 15:33:30.110 I/tflite  ( 5395): Initialized session in 458.883ms.
07-08 15:33:58.991 I/tflite  ( 5395): Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
07-08 15:33:58.992 I/tflite  ( 5395): count=1 curr=2732148 p5=2732148 median=2732148 p95=2732148
07-08 15:33:58.993 I/tflite  ( 5395): Running benchmark for at least 10 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
07-08 15:34:26.201 I/tflite  ( 5395): count=10 first=2653894 curr=2709263 min=2640862 max=3025403 avg=2.71985e+06 std=105101 p5=2640862 median=2709263 p95=3025403
07-08 15:34:26.202 I/tflite  ( 5395): Inference timings in us: Init: 458883, First inference: 2732148, Warmup (avg): 2.73215e+06, Inference (avg): 2.71985e+06
07-08 15:34:26.202 I/tflite  ( 5395): Memory footprint delta from the start of the tool (MB): init=286.73 overall=337
"""

GPU_FAILED = """\
INFO: Use gpu: [1]
INFO: Loaded model /data/local/tmp/edge_deeplab/model.tflite
ERROR: Failed to create GPU delegate: OpenCL library not loaded.
ERROR: Failed to apply GPU delegate.
Benchmarking failed.
"""

# (output, runs, median_ms, min_ms, max_ms, mean_ms, std_ms, init_ms, first_ms, warmup_mean_ms, peak_memory_mb)
EXPECTED = {
    "modern": (MODERN, 337, 2.781, 2.605, 20.356, 2.94227, 1.190, 6.395, 2.761, 3.24358, 93.2383),
    "scientific": (SCIENTIFIC, 50, None, 911.877, 1112.273, 971.535, 39.112, 6.418, 1041.765, 1041.76, 109.848),
    "old": (OLD, 15, None, 66.699, 66.838, 66.7676, 0.039, 9.933, 127.425, 76.6059, None),
    "all_same": (ALL_SAME, 25, 37.0, 37.0, 37.0, 37.0, 0.0, 4.183, 38.0, 38.0, None),
    "logcat": (LOGCAT, 10, 2709.263, 2640.862, 3025.403, 2719.85, 105.101, 458.883, 2732.148, 2732.15, 337.0),
}
KEYS = ("runs", "median_ms", "min_ms", "max_ms", "mean_ms", "std_ms", "init_ms", "first_ms", "warmup_mean_ms",
        "peak_memory_mb")


@pytest.mark.parametrize("name", EXPECTED)
def test_parses_every_output_format(name):
    text, *expected = EXPECTED[name]
    parsed = parse_benchmark_output(text)
    for key, want in zip(KEYS, expected):
        assert parsed[key] == (pytest.approx(want, rel=1e-6) if want is not None else None), key


def test_output_without_timings_is_an_error():
    with pytest.raises(ValueError):
        parse_benchmark_output(GPU_FAILED)


def test_op_profiling_tables_do_not_replace_the_timed_runs():
    profiled = MODERN + "Timings (microseconds): count=337 first=1 curr=1 min=1 max=1 avg=1 std=0\n" \
                        "Memory (bytes): count=0\n"
    assert parse_benchmark_output(profiled)["mean_ms"] == pytest.approx(2.94227)


# ---------------------------------------------------------------------------------- stand-in adb
FAKE_ADB = textwrap.dedent('''\
    #!{python} -S
    """Stand-in adb: replays benchmark_model output; logs its arguments (one JSON list per line)."""
    import json, os, shutil, sys
    from pathlib import Path

    args = sys.argv[1:]
    state = Path(os.environ["FAKE_ADB_STATE"])
    with open(state / "calls.jsonl", "a") as log:
        log.write(json.dumps(args) + "\\n")
    devices = [line.split() for line in os.environ.get("FAKE_ADB_DEVICES", "").split(";") if line.strip()]
    if args == ["devices"]:
        print("List of devices attached")
        for serial, status in devices:
            print(f"{{serial}}\\t{{status}}")
        print()
        sys.exit(0)
    if args[:1] == ["-s"]:
        serial, args = args[1], args[2:]
        if serial not in dict(devices):
            print(f"adb: device '{{serial}}' not found", file=sys.stderr)
            sys.exit(1)
    props = {{"ro.product.manufacturer": "Google", "ro.product.model": "Pixel 7", "ro.soc.manufacturer": "Google",
             "ro.soc.model": "Tensor G2", "ro.build.version.release": "14", "ro.build.version.sdk": "34",
             "ro.product.cpu.abi": "arm64-v8a"}}
    phone = state / "phone"
    phone.mkdir(exist_ok=True)
    if args[0] == "push":
        local, remote = Path(args[1]), args[2]
        if not local.is_file():
            print(f"adb: error: cannot stat '{{local}}': No such file or directory", file=sys.stderr)
            sys.exit(1)
        shutil.copy(local, phone / Path(remote).name)
        print(f"{{local}}: 1 file pushed, 0 skipped.")
        sys.exit(0)
    if args[0] == "shell":
        command = " ".join(args[1:])
        if command.startswith("getprop "):
            print(props.get(command.split()[1], ""))
        elif command.startswith("/data/local/tmp/benchmark_model"):
            graph = next(a.split("=", 1)[1] for a in command.split() if a.startswith("--graph="))
            if not (phone / "benchmark_model").is_file() or not (phone / Path(graph).name).is_file():
                print("/system/bin/sh: /data/local/tmp/benchmark_model: not found")
                sys.exit(127)
            stream = sys.stderr if os.environ.get("FAKE_ADB_STREAM") == "stderr" else sys.stdout
            stream.write(Path(os.environ["FAKE_ADB_OUTPUT"]).read_text())
            sys.exit(int(os.environ.get("FAKE_ADB_STATUS", "0")))
        sys.exit(0)
    sys.exit(1)
''')


@pytest.fixture
def phone(tmp_path, monkeypatch):
    """A stand-in adb first on PATH and one attached 'Pixel 7'; returns a helper to set its answers."""
    bin_dir, state = tmp_path / "bin", tmp_path / "adb_state"
    bin_dir.mkdir()
    state.mkdir()
    adb = bin_dir / "adb"
    adb.write_text(FAKE_ADB.format(python=sys.executable))
    adb.chmod(adb.stat().st_mode | stat.S_IEXEC)
    binary = tmp_path / "benchmark_model"
    binary.write_bytes(b"\x7fELF stand-in")
    model = tmp_path / "tiny.tflite"
    model.write_bytes(tiny_tflite.tanh_logits(16, 16))
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("ADB", raising=False)
    monkeypatch.setenv("FAKE_ADB_STATE", str(state))
    monkeypatch.setenv("FAKE_ADB_DEVICES", "28241FDH2000A7 device")
    monkeypatch.setenv("EDGE_DEEPLAB_BENCHMARK_MODEL", str(binary))

    class Phone:
        def __init__(self):
            self.model, self.binary, self.dir = model, binary, tmp_path
            self.answer(MODERN)

        def answer(self, text, stream="stdout"):
            (tmp_path / "answer.txt").write_text(text)
            monkeypatch.setenv("FAKE_ADB_OUTPUT", str(tmp_path / "answer.txt"))
            monkeypatch.setenv("FAKE_ADB_STREAM", stream)

        def calls(self):
            return [json.loads(line) for line in (state / "calls.jsonl").read_text().splitlines()]

    return Phone()


def run_cli(args, capsys):
    try:
        main(args)
        code = 0
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("name,stream", [("modern", "stdout"), ("old", "stderr")])
def test_bench_on_the_phone(phone, capsys, name, stream):
    text, runs, median, *_ = EXPECTED[name]
    phone.answer(text, stream)
    out = phone.dir / "out.json"
    code, stdout, stderr = run_cli(["bench", str(phone.model), "--device", "pixel", "--delegate", "gpu",
                                    "--threads", "1,4", "--runs", "20", "--warmup", "3", "--json-file", str(out)], capsys)
    assert code == 0, stderr
    results = json.loads(out.read_text())["results"]
    assert [r["threads"] for r in results] == [1, 4]
    for r in results:
        assert r["device"] == "Google Pixel 7 (Android 14)" and r["soc"] == "Google Tensor G2"
        assert r["delegate"] == "gpu" and r["input"] == "16x16 float32" and r["runs"] == runs
        assert r["median_ms"] == (pytest.approx(median) if median is not None else None)
        assert r["mean_ms"] == pytest.approx(EXPECTED[name][5])
    assert "tiny" in stdout  # the table

    calls = phone.calls()
    pushes = [c for c in calls if "push" in c]
    assert [c[-1] for c in pushes] == ["/data/local/tmp/benchmark_model", "/data/local/tmp/edge_deeplab/tiny.tflite"]
    runs_on_phone = [c[-1] for c in calls if c[-1].startswith("/data/local/tmp/benchmark_model ")]
    assert len(runs_on_phone) == 2
    for command, threads in zip(runs_on_phone, (1, 4)):
        flags = command.split()[1:]
        assert "--graph=/data/local/tmp/edge_deeplab/tiny.tflite" in flags and "--use_gpu=true" in flags
        assert f"--num_threads={threads}" in flags and "--num_runs=20" in flags and "--warmup_runs=3" in flags
    assert all(c[:2] == ["-s", "28241FDH2000A7"] for c in calls if c != ["devices"])


@pytest.mark.parametrize("delegate,flag", [("nnapi", "--use_nnapi=true"), ("cpu", "--use_xnnpack=false"),
                                           ("xnnpack", "--use_xnnpack=true")])
def test_delegate_flags(phone, capsys, delegate, flag):
    code, _, stderr = run_cli(["bench", str(phone.model), "--device", "pixel", "--delegate", delegate,
                               "--threads", "2", "--android-arg=--use_caching=true"], capsys)
    assert code == 0, stderr
    command = [c[-1] for c in phone.calls() if c[-1].startswith("/data/local/tmp/benchmark_model ")][0]
    assert flag in command.split() and "--use_caching=true" in command.split()


def test_serial_picks_one_of_several_devices(phone, capsys, monkeypatch):
    monkeypatch.setenv("FAKE_ADB_DEVICES", "emulator-5554 device;28241FDH2000A7 device")
    code, _, stderr = run_cli(["bench", str(phone.model), "--device", "pixel"], capsys)
    assert code == 2 and "2 devices attached" in stderr and "emulator-5554" in stderr
    code, _, stderr = run_cli(["bench", str(phone.model), "--device", "emulator-5554"], capsys)
    assert code == 0, stderr
    assert any(c[:2] == ["-s", "emulator-5554"] for c in phone.calls())


@pytest.mark.parametrize("devices,message", [
    ("", "no Android device attached"),
    ("28241FDH2000A7 unauthorized", "not ready: 28241FDH2000A7 (unauthorized)"),
])
def test_no_usable_device(phone, capsys, monkeypatch, devices, message):
    monkeypatch.setenv("FAKE_ADB_DEVICES", devices)
    code, _, stderr = run_cli(["bench", str(phone.model), "--device", "pixel"], capsys)
    assert code == 2 and message in stderr


def test_unknown_serial(phone, capsys):
    code, _, stderr = run_cli(["bench", str(phone.model), "--device", "R58M123"], capsys)
    assert code == 2 and "device 'R58M123' is not attached" in stderr


def test_adb_missing(phone, capsys, monkeypatch, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    code, _, stderr = run_cli(["bench", str(phone.model), "--device", "pixel"], capsys)
    assert code == 2 and "adb not found" in stderr


def test_benchmark_binary_absent(phone, capsys, monkeypatch):
    monkeypatch.delenv("EDGE_DEEPLAB_BENCHMARK_MODEL")
    code, _, stderr = run_cli(["bench", str(phone.model), "--device", "pixel"], capsys)
    assert code == 2 and "no benchmark_model binary" in stderr and "EDGE_DEEPLAB_BENCHMARK_MODEL" in stderr
    code, _, stderr = run_cli(["bench", str(phone.model), "--device", "pixel", "--benchmark-binary",
                               str(phone.dir / "nope")], capsys)
    assert code == 2 and "benchmark_model binary not found" in stderr


def test_failed_run_reports_the_phones_error(phone, capsys):
    phone.answer(GPU_FAILED, "stderr")
    code, _, stderr = run_cli(["bench", str(phone.model), "--device", "pixel", "--delegate", "gpu"], capsys)
    assert code == 2 and "gave no timings" in stderr and "Failed to apply GPU delegate" in stderr


def test_gpu_delegate_is_refused_on_the_host(phone, capsys):
    code, _, stderr = run_cli(["bench", str(phone.model), "--delegate", "gpu"], capsys)
    assert code == 2 and "runs on a phone" in stderr
