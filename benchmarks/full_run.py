"""End-to-end performance of `mtmcs run` against a local fake OpenAI-compatible server.

    python benchmarks/full_run.py [--latency 1.0] [--max-connections 256] [--rows 752]
                                  [--data-dir DIR] [--out DIR] [--keep] [--cold]
                                  [--bare-calls 10000] [--compare-limit 376]
                                  [--kill-at 0.5] [--py-spy FILE]

Generates (or reuses) a synthetic dataset of the official schema (`benchmarks/synthetic.py`),
starts `benchmarks/bench_server.py` (the fake server of `tests/fakeserver.py`, answering by
request kind, with latency L) as a subprocess, runs the real `mtmcs run` command as a
subprocess against it (model and judge on the same server, C connections each) and prints
one line per figure:

- calls made (model + judge, from OUT/summary.json) and requests the server received;
- wall time of the client process, its start-up (until the first request reaches the server);
- the ideal bound max(5·L, model calls·L/C, judge calls·L/C_judge) (model and judge each on
  their own connections) and efficiency = ideal / wall;
- client CPU (user + sys of the `mtmcs` process, from `os.wait4`) per call, and its peak RSS;
- store size (store.sqlite + -wal);
- the sequential estimate calls × (L + client CPU per call) and the speed-up against it;
- images encoded, when summary.json reports it.

Then, unless `--kill-at`: the same command again on the finished run (0 calls: its wall
time), the bare `openai` client on the same server (`benchmarks/bare_client.py`, `--bare-calls`
text-only calls at C connections: the CPU floor per call, measured in the same session), with
`--compare-limit N` a run of N rows per split (peak RSS growth per 1,000 rows), and one
`[target]` line per target of issue 21 with its figure and the ratio to the bare client.
`--cold` starts from no recorded validation (`MTMCS_VALIDATION_CACHE` in a fresh directory):
the first run then checks every image while it runs; the rerun finds them validated.

`--kill-at F` also checks resumption: an uninterrupted run into OUT/reference, then a run into
OUT/resumed killed with SIGKILL once the server has received F × planned calls, then the
same command again; it prints the calls made across both runs against the plan (target:
at most planned + C) and whether the resumed metrics equal the uninterrupted run's.

`--py-spy FILE` samples the client with py-spy (`py-spy record --pid`; FILE.txt: collapsed
stacks, FILE.svg: flame graph, otherwise speedscope JSON; needs `pip install py-spy`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

import synthetic  # noqa: E402

MODEL_CALLS_PER_ROW = 24
JUDGE_CALLS_PER_ROW = 4
CALLS_PER_ROW = MODEL_CALLS_PER_ROW + JUDGE_CALLS_PER_ROW


def mtmcs_command() -> str:
    local = ROOT / ".venv" / "bin" / "mtmcs"
    if local.exists():
        return str(local)
    found = shutil.which("mtmcs")
    if found is None:
        sys.exit("cannot find the mtmcs command (install the package in the venv)")
    return found


class Server:
    """`bench_server.py` as a subprocess; `count()` asks it how many requests it received."""

    def __init__(self, latency: float) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "benchmarks" / "bench_server.py"),
                "--port",
                "0",
                "--latency",
                str(latency),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        self.base_url = self.process.stdout.readline().strip()
        if not self.base_url.startswith("http"):
            self.stop()
            sys.exit(f"the fake server did not start (printed {self.base_url!r})")
        self._count_url = self.base_url.removesuffix("/v1") + "/count"

    def cpu_s(self) -> float:
        """CPU seconds the server process has used so far."""
        return process_cpu_s(self.process.pid) or 0.0

    def count(self) -> int:
        with urllib.request.urlopen(self._count_url, timeout=10) as response:
            return int(json.loads(response.read())["total"])

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@dataclass
class ClientRun:
    """What one `mtmcs run` process did."""

    out: Path
    returncode: int
    wall_s: float
    startup_s: float | None  # until the server saw the first request of this run
    startup_cpu_s: float | None  # client CPU spent by then (loading and checking the data)
    cpu_s: float
    maxrss_mb: float
    requests: int  # requests the server received during this run
    server_cpu_s: float = 0.0  # CPU the loopback server used meanwhile (it shares the cores)
    killed: bool = False
    summary: dict[str, Any] | None = field(default=None, repr=False)


def process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a running process (Linux /proc), or None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_client(
    server: Server,
    data_dir: Path,
    out: Path,
    connections: int,
    *,
    kill_after: int | None = None,
    py_spy: Path | None = None,
    limit: int | None = None,
    env: dict[str, str] | None = None,
) -> ClientRun:
    command = [
        mtmcs_command(),
        "run",
        "--dataset",
        str(data_dir),
        "--model",
        "openai-compatible/bench",
        "--judge",
        "openai-compatible/judge",
        "--base-url",
        server.base_url,
        "--judge-base-url",
        server.base_url,
        "--max-connections",
        str(connections),
        "--judge-max-connections",
        str(connections),
        "--out",
        str(out),
        *(["--limit", str(limit)] if limit is not None else []),
    ]
    out.mkdir(parents=True, exist_ok=True)
    log = (out / "client.log").open("a")
    before = server.count()
    server_cpu = server.cpu_s()
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    spy = None
    if py_spy is not None:
        kind = {".txt": "raw", ".svg": "flamegraph"}.get(py_spy.suffix, "speedscope")
        spy = subprocess.Popen(
            [
                str(ROOT / ".venv" / "bin" / "py-spy"),
                "record",
                "--pid",
                str(process.pid),
                "--rate",
                "100",
                "--format",
                kind,
                "--output",
                str(py_spy),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    first: float | None = None
    first_cpu: float | None = None
    killed = False
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        time.sleep(0.1)
        made = server.count() - before
        if first is None and made > 0:
            first = time.perf_counter() - started
            first_cpu = process_cpu_s(process.pid)
        if kill_after is not None and not killed and made >= kill_after:
            os.kill(process.pid, signal.SIGKILL)
            killed = True
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    log.close()
    if spy is not None:
        spy.wait(60)
    summary_path = out / "summary.json"
    summary = None
    if not killed and summary_path.exists():
        summary = json.loads(summary_path.read_text())
    return ClientRun(
        out=out,
        returncode=process.returncode,
        wall_s=wall,
        startup_s=first,
        startup_cpu_s=first_cpu,
        cpu_s=usage.ru_utime + usage.ru_stime,
        maxrss_mb=usage.ru_maxrss / 1024,
        requests=server.count() - before,
        server_cpu_s=server.cpu_s() - server_cpu,
        killed=killed,
        summary=summary,
    )


def store_mb(out: Path) -> tuple[float, float]:
    def size(path: Path) -> float:
        return path.stat().st_size / 1e6 if path.exists() else 0.0

    return size(out / "store.sqlite"), size(out / "store.sqlite-wal")


def ideal_s(latency: float, connections: int, rows: int) -> float:
    """max(5·L, model calls·L/C, judge calls·L/C): model and judge on their own C connections."""
    model, judge = rows * MODEL_CALLS_PER_ROW, rows * JUDGE_CALLS_PER_ROW
    return max(5 * latency, model * latency / connections, judge * latency / connections)


def report(run: ClientRun, latency: float, connections: int, planned: int, label: str) -> None:
    def line(name: str, value: str) -> None:
        print(f"[{label}] {name}: {value}", flush=True)

    meta = (run.summary or {}).get("metadata", {})
    calls = meta.get("calls", {})
    made = sum(calls.get(role, {}).get("made", 0) for role in ("model", "judge"))
    cached = sum(calls.get(role, {}).get("cached", 0) for role in ("model", "judge"))
    failed = sum(calls.get(role, {}).get("failed", 0) for role in ("model", "judge"))
    line("exit code", f"{run.returncode}" + (" (killed)" if run.killed else ""))
    line(
        "calls made",
        f"{made} (model {calls.get('model', {}).get('made', '?')} + judge "
        f"{calls.get('judge', {}).get('made', '?')}); cached {cached}; failed {failed}; "
        f"planned {planned}; server received {run.requests}",
    )
    line("wall", f"{run.wall_s:.1f} s (summary wall_s {meta.get('wall_s', '?')})")
    line(
        "start-up (to first request)", "n/a" if run.startup_s is None else f"{run.startup_s:.1f} s"
    )
    ideal = ideal_s(latency, connections, planned // CALLS_PER_ROW)
    line("ideal max(5L, model calls*L/C, judge calls*L/C)", f"{ideal:.1f} s")
    line("efficiency ideal/wall", f"{ideal / run.wall_s:.2f}" if ideal > 0 else "n/a (L=0)")
    per_call = run.cpu_s / run.requests if run.requests else float("nan")
    line("client CPU", f"{run.cpu_s:.1f} s = {1000 * per_call:.2f} ms per call (all)")
    if run.startup_cpu_s is not None and run.requests:
        calls_cpu = run.cpu_s - run.startup_cpu_s
        line(
            "client CPU of the calls phase",
            f"{calls_cpu:.1f} s = {1000 * calls_cpu / run.requests:.2f} ms per call "
            f"(start-up: {run.startup_cpu_s:.1f} s loading and checking the data)",
        )
    line("client peak RSS", f"{run.maxrss_mb:.0f} MB")
    line(
        "loopback server CPU (same cores)",
        f"{run.server_cpu_s:.1f} s = {1000 * run.server_cpu_s / max(run.requests, 1):.2f} ms "
        f"per call; client + server {(run.cpu_s + run.server_cpu_s) / run.wall_s:.2f} of 2 cores",
    )
    main_mb, wal_mb = store_mb(run.out)
    line("store size", f"{main_mb + wal_mb:.1f} MB (sqlite {main_mb:.1f} + wal {wal_mb:.1f})")
    sequential = planned * (latency + per_call)
    line("sequential estimate calls*(L+cpu)", f"{sequential:.0f} s")
    line("speed-up vs sequential", f"{sequential / run.wall_s:.1f}x")
    images = meta.get("images", {})
    line(
        "images",
        f"{images.get('decoded', '?')} decoded (validation), "
        f"{images.get('encoded', '?')} encoded (sending)",
    )


def bare_client(server: Server, calls: int, connections: int, transport: str = "httpx") -> float:
    """CPU ms per call of the bare `openai` client (`bare_client.py`) against `server`, over
    the SDK's default transport (`httpx`) or its aiohttp one."""
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "bare_client.py"),
            server.base_url,
            "--calls",
            str(calls),
            "--connections",
            str(connections),
            "--transport",
            transport,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    figures = json.loads(result.stdout)
    print(
        f"[bare openai client, {transport}] {figures['calls']} calls "
        f"({figures['failed']} failed) in "
        f"{figures['wall_s']:.1f} s, CPU {figures['cpu_s']:.1f} s = "
        f"{1000 * figures['cpu_s'] / figures['calls']:.2f} ms per call",
        flush=True,
    )
    return float(1000 * figures["cpu_s"] / figures["calls"])


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def targets(
    run: ClientRun,
    rerun: ClientRun | None,
    bare_ms: dict[str, float],
    latency: float,
    connections: int,
    rows: int,
    smaller: tuple[ClientRun, int] | None,
) -> None:
    """One line per target of issue 21: the figure, the target, met or MISSED."""

    def line(name: str, figure: str, met: bool | None) -> None:
        verdict = "" if met is None else (" met" if met else " MISSED")
        print(f"[target] {name}: {figure}{verdict}", flush=True)

    if rerun is not None:
        line(
            "rerun of the finished run",
            f"{rerun.wall_s:.2f} s, {rerun.requests} calls (target <= 3 s, 0 calls)",
            rerun.wall_s <= 3 and rerun.requests == 0,
        )
    decoded = (run.summary or {}).get("metadata", {}).get("images", {}).get("decoded")
    if run.startup_s is not None:
        line(
            "first call after start",
            f"{run.startup_s:.1f} s, {decoded} images decoded in the run (target <= 3 s)",
            run.startup_s <= 3,
        )
    per_call = 1000 * run.cpu_s / run.requests if run.requests else float("nan")
    ratio = "".join(
        f"; {per_call / ms:.2f}x the bare openai client's {ms:.2f} ms over {transport}"
        for transport, ms in bare_ms.items()
    )
    line(
        "all-in client CPU per call",
        f"{per_call:.2f} ms{ratio} (target <= 2.0 ms at L = 0)",
        per_call <= 2.0 if latency == 0 else None,
    )
    if latency > 0:
        ideal = ideal_s(latency, connections, rows)
        line(
            "wall / ideal bound (model and judge on their own connections)",
            f"{run.wall_s:.1f} s / {ideal:.1f} s = {run.wall_s / ideal:.3f} (target <= 1.08)",
            run.wall_s <= 1.08 * ideal,
        )
    line("peak RSS", f"{run.maxrss_mb:.0f} MB (target <= 500 MB)", run.maxrss_mb <= 500)
    if smaller is not None:
        small, small_rows = smaller
        growth = (run.maxrss_mb - small.maxrss_mb) / ((rows - small_rows) / 1000)
        line(
            "peak RSS growth per 1,000 rows",
            f"{growth:.0f} MB ({small.maxrss_mb:.0f} MB at {small_rows} rows, "
            f"{run.maxrss_mb:.0f} MB at {rows})",
            None,
        )
    print(f"[target] load average at the end: {load_average()}", flush=True)


def metrics_only(summary: dict[str, Any] | None) -> dict[str, Any]:
    return {key: value for key, value in (summary or {}).items() if key != "metadata"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--latency", type=float, default=1.0, help="server latency in s")
    parser.add_argument("--max-connections", type=int, default=256, help="C, model and judge")
    parser.add_argument("--rows", type=int, default=752, help="rows per split")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed")
    parser.add_argument("--data-dir", type=Path, help="default /tmp/mtmcs-bench-data/rowsN-seedS")
    parser.add_argument("--out", type=Path, help="run directory (default: a new temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the run directory")
    parser.add_argument("--kill-at", type=float, help="also test kill -9 + resume at this fraction")
    parser.add_argument("--py-spy", type=Path, help="write a py-spy speedscope profile here")
    parser.add_argument(
        "--cold", action="store_true", help="start with no validation recorded (fresh cache)"
    )
    parser.add_argument(
        "--bare-calls", type=int, default=10_000, help="calls of the bare client (0: none)"
    )
    parser.add_argument(
        "--compare-limit", type=int, help="also run N rows per split: RSS growth per 1,000 rows"
    )
    args = parser.parse_args(argv)

    data_dir = args.data_dir or Path(
        tempfile.gettempdir(), "mtmcs-bench-data", f"rows{args.rows}-seed{args.seed}"
    )
    started = time.perf_counter()
    if synthetic.generate(data_dir, args.rows, args.seed):
        print(f"dataset generated in {time.perf_counter() - started:.0f} s: {data_dir}")
    else:
        print(f"dataset reused: {data_dir}")
    planned = 2 * args.rows * CALLS_PER_ROW
    out = args.out or Path(tempfile.mkdtemp(prefix="mtmcs-bench-run-"))
    if out.exists() and any(out.iterdir()) and args.out is not None:
        sys.exit(f"--out {out} is not empty (it would resume); choose a new directory")
    print(
        f"L={args.latency} s, C={args.max_connections}, rows {args.rows} per split, "
        f"planned calls {planned}, out {out}, load average {load_average()}",
        flush=True,
    )
    env = dict(os.environ)
    if args.cold:
        env["MTMCS_VALIDATION_CACHE"] = tempfile.mkdtemp(prefix="mtmcs-bench-validated-")
    server = Server(args.latency)
    try:
        connections = args.max_connections
        if args.kill_at is None:
            bare_ms = {
                transport: bare_client(server, args.bare_calls, connections, transport)
                for transport in (("httpx", "aiohttp") if args.bare_calls else ())
            }
            run = run_client(server, data_dir, out, connections, py_spy=args.py_spy, env=env)
            report(run, args.latency, connections, planned, "run")
            if run.returncode != 0:
                print((out / "client.log").read_text()[-3000:])
            rerun = run_client(server, data_dir, out, connections, env=env)
            print(
                f"[rerun] exit code {rerun.returncode}; wall {rerun.wall_s:.2f} s; server "
                f"received {rerun.requests} requests; peak RSS {rerun.maxrss_mb:.0f} MB; "
                f"up to date: {'is up to date' in (out / 'client.log').read_text()}",
                flush=True,
            )
            (out / "finished.json").unlink(missing_ok=True)  # as after a change of code
            replay = run_client(server, data_dir, out, connections, env=env)
            print(
                f"[replay] the finished run replayed from its store (finished.json deleted): "
                f"exit code {replay.returncode}; wall {replay.wall_s:.2f} s; server received "
                f"{replay.requests} requests; peak RSS {replay.maxrss_mb:.0f} MB",
                flush=True,
            )
            smaller = None
            if args.compare_limit:
                small = run_client(
                    server,
                    data_dir,
                    out / "smaller",
                    connections,
                    limit=args.compare_limit,
                    env=env,
                )
                report(
                    small,
                    args.latency,
                    connections,
                    2 * args.compare_limit * CALLS_PER_ROW,
                    "smaller",
                )
                smaller = (small, 2 * args.compare_limit)
            targets(run, rerun, bare_ms, args.latency, connections, 2 * args.rows, smaller)
        else:
            reference = run_client(
                server, data_dir, out / "reference", connections, py_spy=args.py_spy
            )
            report(reference, args.latency, connections, planned, "uninterrupted")
            killed = run_client(
                server,
                data_dir,
                out / "resumed",
                connections,
                kill_after=int(args.kill_at * planned),
            )
            sizes = store_mb(out / "resumed")
            print(
                f"[killed] killed: {killed.killed} after {killed.wall_s:.1f} s; server "
                f"received {killed.requests} requests; store then "
                f"{sizes[0] + sizes[1]:.1f} MB",
                flush=True,
            )
            resumed = run_client(server, data_dir, out / "resumed", connections)
            report(resumed, args.latency, connections, planned, "resumed")
            total = killed.requests + resumed.requests
            in_flight = 2 * connections  # C model + C judge connections
            print(
                f"[kill-resume] calls made across both runs: {total} vs planned {planned} "
                f"(extra {total - planned}; at most the calls in flight at the kill, "
                f"planned + C model + C judge = {planned + in_flight}: "
                f"{'met' if total <= planned + in_flight else 'MISSED'}; "
                f"planned + C = {planned + connections}: "
                f"{'met' if total <= planned + connections else 'missed'})"
            )
            same = resumed.summary is not None and metrics_only(resumed.summary) == metrics_only(
                reference.summary
            )
            print(f"[kill-resume] resumed metrics equal the uninterrupted run's: {same}")
    finally:
        server.stop()
        if not args.keep and args.out is None:
            shutil.rmtree(out, ignore_errors=True)
        elif args.keep or args.out is not None:
            print(f"run directory kept: {out}")
    print(f"benchmark total {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
