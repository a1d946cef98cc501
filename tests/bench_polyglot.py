#!/usr/bin/env python3
"""The README's per-language bench rows, through `corral run-job` (release build).

    cargo build --release -p corral && bash tests/polyglot.sh
    python3 tests/bench_polyglot.py [path/to/corral]      # default target/release/corral

For http-vms in Rust, Python and JavaScript: the component's size, its first compile
(`run-job` with an empty compile cache; run-job prints it rounded to the
millisecond, or to the second above one), a cached start (the same again), and the
median time of the job itself (the report's `elapsed`, instantiation included) for a
thumbnail (7 runs) and a 30 MB recording (60 s at camera-sim's 4 Mbit/s, 3 runs).
camera-sim runs in its own process on a free loopback port.
"""

import json
import pathlib
import re
import socket
import statistics
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
CORRAL = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "target/release/corral")
POLYGLOT = ROOT / "target/guests/polyglot"
GUESTS = {
    "Rust": (ROOT / "target/wasm32-wasip2/guest/http_vms.wasm", ROOT / "guests/http-vms/http-vms.toml"),
    "Python": (POLYGLOT / "http_vms_py.wasm", ROOT / "guests/http-vms-py/http-vms-py.toml"),
    "JavaScript": (POLYGLOT / "http_vms_js.wasm", ROOT / "guests/http-vms-js/http-vms-js.toml"),
}
THUMBNAIL = {"jobId": "t", "type": "thumbnail", "deviceId": "cam-0001"}
RECORDING = {
    "jobId": "m",
    "type": "mediarequest",
    "deviceId": "cam-0001",
    "startTimeUtc": "2026-12-01T10:00:00Z",
    "endTimeUtc": "2026-12-01T10:01:00Z",
}


def seconds(debug_duration: str) -> float:
    """Rust's `{:?}` of a Duration (`12.3ms`, `1.2s`, `850µs`) in seconds."""
    number, unit = re.fullmatch(r"([\d.]+)(ns|µs|ms|s)", debug_duration).groups()
    return float(number) * {"ns": 1e-9, "µs": 1e-6, "ms": 1e-3, "s": 1.0}[unit]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_job(wasm, manifest, job, work, cache):
    """One `corral run-job`: (load seconds, job seconds, bytes)."""
    job_file = work / f"{job['jobId']}.json"
    job_file.write_text(json.dumps(job))
    out = work / "out"
    done = subprocess.run(
        [CORRAL, "run-job", "--guest", wasm, "--manifest", manifest, "--job", job_file,
         "--out", out, "--secret", "camera-sim=operator:sim-secret", "--cache-dir", cache],
        capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"run-job {wasm.name} {job['type']} failed:\n{done.stdout}{done.stderr}")
    load = re.search(r"^load\s+([\d.]+(?:ns|µs|ms|s))", done.stdout, re.M).group(1)
    elapsed = re.search(r"elapsed (\S+)$", done.stdout, re.M).group(1)
    sent = int(re.search(r"^bytes\s+(\d+)", done.stdout, re.M).group(1))
    for file in out.iterdir():
        file.unlink()
    return seconds(load), seconds(elapsed), sent


def main():
    subprocess.run(["cargo", "build", "--profile", "guest", "--target", "wasm32-wasip2",
                    "-p", "http-vms", "--target-dir", ROOT / "target"], cwd=ROOT, check=True, capture_output=True)
    port = free_port()
    sim = subprocess.Popen([CORRAL, "camera-sim", "--listen", f"127.0.0.1:{port}"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        sim.stdout.readline()  # the address: it is serving
        rows = []
        with tempfile.TemporaryDirectory() as scratch:
            work = pathlib.Path(scratch)
            for lang, (wasm, manifest) in GUESTS.items():
                if not wasm.exists():
                    sys.exit(f"{wasm} is missing: run `bash tests/polyglot.sh`")
                local = work / manifest.name
                local.write_text(manifest.read_text().replace("127.0.0.1:8081", f"127.0.0.1:{port}"))
                cache = work / f"cache-{lang}"
                first, _, _ = run_job(wasm, local, THUMBNAIL, work, cache)
                cached, _, _ = run_job(wasm, local, THUMBNAIL, work, cache)
                thumbnail = statistics.median(
                    run_job(wasm, local, THUMBNAIL, work, cache)[1] for _ in range(7))
                recordings = [run_job(wasm, local, RECORDING, work, cache) for _ in range(3)]
                recording = statistics.median(run[1] for run in recordings)
                megabytes = recordings[0][2] / 1e6
                rows.append((lang, wasm.stat().st_size / 2**20, first, cached, thumbnail,
                             recording, megabytes))
        print("| http-vms in | component | first compile | cached start | thumbnail job | "
              "recording job |")
        print("|---|---|---|---|---|---|")
        for lang, mib, first, cached, thumbnail, recording, megabytes in rows:
            print(f"| {lang} | {mib:.1f} MiB | {first:.1f} s | {cached * 1e3:.0f} ms | "
                  f"{thumbnail * 1e3:.1f} ms | {recording:.2f} s ({megabytes:.0f} MB, "
                  f"{megabytes / recording:.0f} MB/s) |")
    finally:
        sim.terminate()


if __name__ == "__main__":
    main()
