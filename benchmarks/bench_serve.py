"""Serving benchmark: final candle → prediction in Kafka, HTTP latency and peak rate.

Run: .venv/bin/python benchmarks/bench_serve.py [--candles 60] [--seconds 20] [--step-seconds 10]
Starts its own tansu, PostgreSQL and MLflow on free ports in a temp dir and a local Ray with 2
CPUs (all stopped at the end), trains and registers a small champion for one pair the way the
serving tests do, deploys the Serve app with `deploy_app` (publisher on) and measures:
1. final candle → prediction in Kafka: one final indicator row a second into
   `technical_indicators`; the time from producing it until the first prediction of its
   window is read from `predictions`, p50/p99;
2. at 100 requests/s, p50/p99 of `GET /v1/predictions/{pair}` (latest), `POST /v1/predict`
   without rows (the latest rows in the DB) and with an explicit window of rows;
3. the peak rate of each: the offered rate steps up until a step has p99 ≥ 100 ms, completes
   fewer than 95 % of the offered requests per second, or has an error.
HTTP load comes from a separate process on loopback (`serve_load.py`): an open loop at a fixed
rate over keep-alive connections, latency from each request's scheduled send time.
`--ingress` picks Serve's HTTP ingress: haproxy (the default, as the embedded stack runs it) or
Serve's Python proxy. `--api-replicas`, `--latest-cache-ms` and RAY_SERVE_* variables set before
the run are passed on.
Ray starts worker processes (so the Serve proxy and replicas) at nice 15; on a machine shared
with other work that measures the scheduler more than the app, so the benchmark runs them at
`--worker-niceness` 0 unless told otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from confluent_kafka import TopicPartition

from cryptopred.stack.parts import Broker, Mlflow, Postgres
from cryptopred_core import tables, topics
from cryptopred_core.db import connect, create_schema, fetch_all, upsert
from cryptopred_core.kafka import ensure_topics, make_consumer, make_producer
from cryptopred_core.ports import free_port
from cryptopred_core.raycluster import (
    keep_workers_in_this_env,
    remove_serve_run_dir,
    secure_local_ray,
    serve_ingress_environ,
    serve_run_dir,
)
from cryptopred_core.records import IndicatorRow, Prediction, decode, encode, to_dict
from cryptopred_core.settings import Settings
from cryptopred_serving.deploy import deploy_app
from cryptopred_serving.pairs import pair_to_url
from cryptopred_serving.settings import ServeSettings
from cryptopred_testsupport.serving import rows_of, train_and_register, wait_for
from cryptopred_training.synthetic import synthetic_indicator_frame

PAIR = "BTC/USD"
HISTORY_ROWS = 400
WARM_ROWS = 3  # streamed before the measured candles (first DB read, first model call)
LOAD = Path(__file__).with_name("serve_load.py")
PEAK_RATES = (25, 50, 100, 150, 200, 300, 400, 500, 600, 700, 800, 900, 1000, 1200, 1500, 2000)


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.2f}/{five:.2f}"


def quantiles_ms(seconds: list[float]) -> tuple[float, float]:
    ms = [s * 1000 for s in seconds]
    q = statistics.quantiles(ms, n=100, method="inclusive")
    return q[49], q[98]


class PredictionWatch:
    """Reads `predictions` in a thread; the first arrival time of each window_end_ms."""

    def __init__(self, settings: Settings) -> None:
        self.consumer = make_consumer(settings, "bench-serve-watch")
        meta = self.consumer.list_topics(topics.PREDICTIONS, timeout=10).topics[topics.PREDICTIONS]
        self.consumer.assign([TopicPartition(topics.PREDICTIONS, p, 0) for p in meta.partitions])
        self.first: dict[int, float] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            for msg in self.consumer.consume(1000, timeout=0.01):
                at = time.perf_counter()
                if msg.error() is None:
                    window_end = decode(msg.value() or b"", Prediction).window_end_ms
                    self.first.setdefault(window_end, at)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.consumer.close()


def candle_latency(
    settings: Settings, rows: list[IndicatorRow], interval_s: float
) -> tuple[list[float], int]:
    """Produce one final row every interval; (produce → first prediction latencies, missing)."""
    watch = PredictionWatch(settings)
    producer = make_producer(settings, **{"linger.ms": 0})
    try:
        for row in rows[:WARM_ROWS]:
            producer.produce(topics.TECHNICAL_INDICATORS, key=PAIR.encode(), value=encode(row))
        producer.flush(10)
        wait_for(lambda: all(r.window_end_ms in watch.first for r in rows[:WARM_ROWS]), 120)
        sent: dict[int, float] = {}
        next_at = time.perf_counter()
        for row in rows[WARM_ROWS:]:
            time.sleep(max(0.0, next_at - time.perf_counter()))
            sent[row.window_end_ms] = time.perf_counter()
            producer.produce(topics.TECHNICAL_INDICATORS, key=PAIR.encode(), value=encode(row))
            producer.poll(0)
            next_at += interval_s
        producer.flush(10)
        deadline = time.perf_counter() + 30
        while time.perf_counter() < deadline and not sent.keys() <= watch.first.keys():
            time.sleep(0.1)
        latencies = [watch.first[w] - t for w, t in sent.items() if w in watch.first]
        return latencies, len(sent) - len(latencies)
    finally:
        watch.close()


def parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


def ours(pid: int) -> bool:
    """Whether the process descends from this one (our local Ray's workers do)."""
    while pid > 1:
        pid = parent(pid)
        if pid == os.getpid():
            return True
    return False


def serve_pids() -> dict[str, list[int]]:
    """pids of our Serve proxy (or HAProxy) and of each deployment's replicas, by process
    title (Linux /proc)."""
    found: dict[str, list[int]] = {}
    for entry in Path("/proc").iterdir():
        try:
            title = (entry / "cmdline").read_bytes().split(b"\0")[0].decode()
        except (OSError, UnicodeDecodeError):
            continue
        is_haproxy = Path(title).name == "haproxy"
        if not (title.startswith("ray::") or is_haproxy) or not ours(int(entry.name)):
            continue
        if is_haproxy:
            name = "haproxy"
        elif title.startswith("ray::ProxyActor"):
            name = "proxy"
        elif title.startswith("ray::ServeReplica:"):
            name = title.split(".")[0].rsplit(":", 1)[-1]
        else:
            continue
        found.setdefault(name, []).append(int(entry.name))
    return found


def cpu_seconds(pids: dict[str, list[int]]) -> dict[str, float]:
    """CPU seconds (user + system) of each group of processes."""
    out: dict[str, float] = {}
    for name, group in pids.items():
        for pid in group:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            ticks = int(fields[11]) + int(fields[12])
            out[name] = out.get(name, 0.0) + ticks / os.sysconf("SC_CLK_TCK")
    return out


def http_step(port: int, method: str, path: str, body: str, rate: float, seconds: float) -> Any:
    """One load step from a separate process; its JSON result, with the CPU time the Serve
    processes and the load generator spent per scheduled request (`cpu_ms`)."""
    pids = serve_pids()
    before = cpu_seconds(pids)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    command = [
        *(sys.executable, str(LOAD), "--port", str(port), "--method", method, "--path", path),
        *("--rate", str(rate), "--seconds", str(seconds), "--body", body),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 120)
    if done.returncode != 0:
        raise RuntimeError(f"load generator failed: {done.stderr[-2000:]}")
    step = json.loads(done.stdout)
    after = cpu_seconds(pids)
    load_cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    after["load generator"] = load_cpu.ru_utime + load_cpu.ru_stime
    before["load generator"] = children.ru_utime + children.ru_stime
    step["cpu_ms"] = {
        name: (after[name] - before[name]) * 1000 / max(step["scheduled"], 1)
        for name in before
        if name in after and name not in ("PredictionPublisher",)
    }
    return step


def passes(step: Any) -> bool:
    return (
        not step["errors"]
        and step["p99_ms"] is not None
        and step["p99_ms"] < 100
        and step["achieved"] >= 0.95 * step["offered"]
    )


def describe(step: Any) -> str:
    p50, p99 = step["p50_ms"], step["p99_ms"]
    latency = f"p50 {p50:6.1f} ms  p99 {p99:7.1f} ms" if p99 is not None else "no answers"
    errors = f"  errors {step['errors']}" if step["errors"] else ""
    return (
        f"offered {step['offered']:6.0f}/s  achieved {step['achieved']:7.1f}/s  {latency}"
        f"  conns {step['connections']}{errors}  ({load()})"
    )


def describe_cpu(step: Any) -> str:
    parts = [f"{name} {ms:.1f}" for name, ms in sorted(step["cpu_ms"].items())]
    return "  CPU ms per request: " + ", ".join(parts)


def peak(port: int, method: str, path: str, body: str, seconds: float) -> float | None:
    best = None
    for rate in PEAK_RATES:
        step = http_step(port, method, path, body, rate, seconds)
        ok = passes(step)
        print(f"  {method:4} {describe(step)}  {'ok' if ok else 'FAIL'}", flush=True)
        print(f"  {describe_cpu(step)}", flush=True)
        if not ok:
            break
        best = rate
    return best


def start_stack(folder: Path) -> tuple[list[Any], Settings]:
    base = Settings(
        data_dir=folder, broker_port=free_port(), postgres_port=free_port(), mlflow_port=free_port()
    )
    broker, postgres, mlflow = Broker(base), Postgres(base), Mlflow(base)
    started: list[Any] = []
    try:
        for part in (broker, postgres, mlflow):
            part.start()
            started.append(part)
    except BaseException:
        for part in reversed(started):
            part.stop()
        raise
    settings = base.model_copy(
        update={
            "kafka_bootstrap": broker.address,
            "database_url": postgres.address,
            "mlflow_tracking_uri": mlflow.address,
        }
    )
    return started, settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--candles", type=int, default=60)
    parser.add_argument("--candle-interval", type=float, default=1.0)
    parser.add_argument("--seconds", type=float, default=20.0, help="the 100 requests/s runs")
    parser.add_argument("--step-seconds", type=float, default=10.0, help="each peak step")
    parser.add_argument("--api-replicas", type=int, default=None)
    parser.add_argument("--latest-cache-ms", type=int, default=None)
    parser.add_argument("--worker-niceness", type=int, default=0, help="Ray's default: 15")
    parser.add_argument("--ingress", choices=("haproxy", "proxy"), default="haproxy")
    parser.add_argument("--only", choices=("get", "post", "rows"), default=None)
    args = parser.parse_args()
    os.environ["RAY_worker_niceness"] = str(args.worker_niceness)  # noqa: SIM112 (Ray's name)
    keep_workers_in_this_env()
    secure_local_ray(Path(tempfile.mkdtemp(prefix="bench-ray-")))
    import ray
    from ray import serve

    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        parts, settings = start_stack(Path(tmp))
        try:
            frame = synthetic_indicator_frame(
                HISTORY_ROWS + WARM_ROWS + args.candles, pair=PAIR, seed=11
            )
            rows = rows_of(frame)
            with connect(settings.db_url) as conn:
                create_schema(conn, "postgres")
                upsert(conn, tables.TECHNICAL_INDICATORS, rows[:HISTORY_ROWS], "postgres")
            ensure_topics(settings, topics.ALL_TOPICS, partitions=2)
            started = time.perf_counter()
            train_and_register(settings.mlflow_uri, frame.iloc[:HISTORY_ROWS], seed=0, pair=PAIR)
            print(f"champion trained and registered in {time.perf_counter() - started:.1f} s")
            ingress = settings.model_copy(update={"serve_ingress": args.ingress})
            run_dir = serve_run_dir(f"bench-{os.getpid()}")
            with serve_ingress_environ(ingress, run_dir):
                ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
            overrides: dict[str, Any] = {}
            if args.api_replicas is not None:
                overrides["api_replicas"] = args.api_replicas
            if args.latest_cache_ms is not None:
                overrides["latest_cache_ms"] = args.latest_cache_ms
            serve_settings = ServeSettings(
                **settings.model_dump(exclude_unset=True),
                pairs=[PAIR],
                candle_seconds=[60],
                serve_port=free_port(),
                rate_limit_per_min=0,  # one client sends every request here
                **overrides,
            )
            started = time.perf_counter()
            deploy_app(serve_settings)
            print(
                f"Serve app deployed in {time.perf_counter() - started:.1f} s "
                f"({os.cpu_count()} cores, ingress {args.ingress}, "
                f"api_replicas {serve_settings.api_replicas}, "
                f"latest_cache_ms {serve_settings.latest_cache_ms}, "
                f"RAY_SERVE_* {sorted(k for k in os.environ if k.startswith('RAY_SERVE_'))})"
            )
            try:
                run_phases(args, serve_settings, rows[HISTORY_ROWS - 16 :])
            finally:
                serve.shutdown()  # type: ignore[no-untyped-call]
                ray.shutdown()
                remove_serve_run_dir(run_dir)
        finally:
            for part in reversed(parts):
                part.stop()


def run_phases(args: argparse.Namespace, settings: ServeSettings, rows: list[IndicatorRow]) -> None:
    """`rows`: the last 16 history rows (an explicit window), then the rows to stream."""
    window, live = rows[:16], rows[16:]
    latencies, missing = candle_latency(settings, live, args.candle_interval)
    p50, p99 = quantiles_ms(latencies)
    print(
        f"final candle -> prediction in Kafka: n={len(latencies)} missing={missing} "
        f"p50 {p50:.0f} ms  p99 {p99:.0f} ms  max {max(latencies) * 1000:.0f} ms  ({load()})",
        flush=True,
    )
    with connect(settings.db_url, autocommit=True) as conn:
        n = fetch_all(conn, "SELECT count(*) AS n FROM predictions")[0]["n"]
    print(f"predictions in the DB: {n}")
    targets = {
        "get": ("GET", f"/v1/predictions/{pair_to_url(PAIR)}", ""),
        "post": ("POST", "/v1/predict", json.dumps({"pair": PAIR, "candle_seconds": 60})),
        "rows": (
            "POST",
            "/v1/predict",
            json.dumps({"pair": PAIR, "rows": [to_dict(r) for r in window]}),
        ),
    }
    chosen = [args.only] if args.only else list(targets)
    port = settings.serve_port
    for name in chosen:
        method, path, body = targets[name]
        step = http_step(port, method, path, body, 100, args.seconds)
        print(f"{name:4} {method} {path} at 100/s: {describe(step)}", flush=True)
        print(describe_cpu(step), flush=True)
    for name in chosen:
        method, path, body = targets[name]
        print(f"peak {name} (p99 < 100 ms, >= 95 % achieved, no errors):", flush=True)
        best = peak(port, method, path, body, args.step_seconds)
        print(f"peak {name}: {best if best is not None else 'below 25'} requests/s", flush=True)


if __name__ == "__main__":
    main()
