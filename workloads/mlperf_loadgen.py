"""MLCommons LoadGen drives the HTTP service as its system under test (not `workloads.loadgen`, jetfleet's own
replay of a recorded workload).

LoadGen decides when each query is issued (Server: Poisson arrivals at a target QPS; SingleStream: one query
after another; MultiStream: queries of several samples, one after another; Offline: every sample at once) and
judges the run from the completion times the SUT reports. The SUT here turns each query into
`POST /v1/infer` requests of synthetic frames (`"frames": n`), sends them from an asyncio loop on a
background thread, and completes the query's samples when their answers come back. Answers that are not
`completed` (dropped, rejected, failed) still complete their samples — LoadGen needs every sample answered —
and are counted beside LoadGen's summary so that a VALID run with drops cannot pass unnoticed.

Energy: the service's per-device run energy (`GET /v1/fleet`, `run_energy_j`) is read before the test and after
it; frames/J is the frames completed during the test over that difference (the same window).

Outputs in `out_dir`: LoadGen's own `mlperf_log_summary.txt` and `mlperf_log_detail.txt`, and
`jetfleet_loadgen.json` with LoadGen's headline figures (VALID/INVALID, percentiles, achieved QPS) parsed from
the summary next to jetfleet's energy figures. A run shorter than MLPerf's 600 s minimum is labelled
`"compliant": false`: a smoke test of the pipeline, not an MLPerf result.

mlperf_loadgen is imported when a test runs (`pip install 'jetfleet[loadgen]'`).
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from jetfleet.errors import ConfigError

SCENARIOS = {"server": "Server", "singlestream": "SingleStream", "multistream": "MultiStream", "offline": "Offline"}
MLPERF_MIN_DURATION_S = 600.0  # MLPerf Inference's minimum run length; shorter runs are not compliant
SUMMARY_FILE = "mlperf_log_summary.txt"
REPORT_FILE = "jetfleet_loadgen.json"


@dataclass(frozen=True)
class LoadGenConfig:
    """One LoadGen test against the service (`scenario` one of SCENARIOS)."""

    scenario: str = "server"
    model: str = "inceptionv3"
    slo_ms: float = 500.0  # the request's SLO and LoadGen's target latency (Server)
    target_qps: float = 10.0  # Server: offered queries/s; Offline: the expected throughput
    min_duration_s: float = 10.0
    min_query_count: int = 1
    samples: int = 64  # the query sample library's size (synthetic frames)
    multistream_samples: int = 8  # samples per MultiStream query (one request of that many frames)
    offline_frames_per_request: int = 16
    priority: int = 0
    stream: str = "mlperf-loadgen"

    def __post_init__(self) -> None:
        if self.scenario not in SCENARIOS:
            raise ConfigError(f"--scenario {self.scenario!r}: expected one of {', '.join(SCENARIOS)}")
        for name in ("slo_ms", "target_qps", "min_duration_s"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"loadgen: {name} must be > 0, got {getattr(self, name)}")

    @property
    def compliant_length(self) -> bool:
        return self.min_duration_s >= MLPERF_MIN_DURATION_S


@dataclass
class SutRecord:
    """What the SUT saw: answers by status and frames completed."""

    requests: int = 0
    frames_completed: int = 0
    by_status: Counter = field(default_factory=Counter)


class HttpSut:
    """The LoadGen system under test: queries -> POST /v1/infer on a background asyncio loop."""

    def __init__(self, lg: Any, url: str, token: str | None, config: LoadGenConfig, transport: Any = None) -> None:
        self.lg, self.config = lg, config
        self.record = SutRecord()
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="loadgen-sut", daemon=True)
        self._thread.start()
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        timeout = max(30.0, config.slo_ms / 1e3 * 4)
        limits = httpx.Limits(max_connections=256, max_keepalive_connections=64)
        self._client = self._run(self._make_client(url, headers, timeout, limits, transport))

    @staticmethod
    async def _make_client(url: str, headers: dict, timeout: float, limits: Any, transport: Any) -> Any:
        return httpx.AsyncClient(base_url=url, headers=headers, timeout=timeout, limits=limits, transport=transport)

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def issue_queries(self, samples: list[Any]) -> None:
        """LoadGen's callback: send the samples, grouped into requests, without waiting for answers."""
        size = {"multistream": len(samples), "offline": self.config.offline_frames_per_request}
        step = max(1, size.get(self.config.scenario, 1))
        for i in range(0, len(samples), step):
            group = [(s.id, s.index) for s in samples[i : i + step]]
            asyncio.run_coroutine_threadsafe(self._send(group), self._loop)

    async def _send(self, group: list[tuple[int, int]]) -> None:
        body = {
            "model": self.config.model,
            "slo_ms": self.config.slo_ms,
            "priority": self.config.priority,
            "stream": self.config.stream,
            "frames": len(group),
        }
        try:
            r = await self._client.post("/v1/infer", json=body)
            status = _answer_status(r)
        except (httpx.HTTPError, ValueError) as e:
            status = f"error:{type(e).__name__}"
        with self._lock:
            self.record.requests += 1
            self.record.by_status[status] += 1
            if status == "completed":
                self.record.frames_completed += len(group)
        self.lg.QuerySamplesComplete([self.lg.QuerySampleResponse(sid, 0, 0) for sid, _ in group])

    def flush_queries(self) -> None:
        return None

    def close(self) -> None:
        self._run(self._client.aclose())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)


def loadgen_settings(lg: Any, config: LoadGenConfig) -> Any:
    """LoadGen's TestSettings for `config` (performance mode)."""
    settings = lg.TestSettings()
    settings.scenario = getattr(lg.TestScenario, SCENARIOS[config.scenario])
    settings.mode = lg.TestMode.PerformanceOnly
    latency_ns = int(config.slo_ms * 1e6)
    settings.server_target_qps = config.target_qps
    settings.server_target_latency_ns = latency_ns
    settings.single_stream_expected_latency_ns = max(1, latency_ns // 4)
    settings.multi_stream_expected_latency_ns = latency_ns
    settings.multi_stream_samples_per_query = config.multistream_samples
    settings.offline_expected_qps = config.target_qps
    settings.min_duration_ms = int(config.min_duration_s * 1e3)
    settings.min_query_count = config.min_query_count
    return settings


def fleet_energy_j(client: httpx.Client) -> float:
    """The service's run energy so far, summed over devices (GET /v1/fleet); ConfigError naming the URL when
    the service cannot be asked (not running, wrong token)."""
    try:
        r = client.get("/v1/fleet")
        r.raise_for_status()
        return float(sum(d.get("run_energy_j") or 0.0 for d in r.json()["devices"]))
    except httpx.HTTPStatusError as e:
        raise ConfigError(
            f"{client.base_url}: GET /v1/fleet answered {e.response.status_code}: {e.response.text}"
        ) from None
    except (httpx.HTTPError, ValueError, KeyError) as e:
        raise ConfigError(f"{client.base_url}: cannot read the fleet's energy: {type(e).__name__}: {e}") from None


def parse_summary(text: str) -> dict[str, Any]:
    """LoadGen's headline figures from mlperf_log_summary.txt: result, which constraints were satisfied, QPS
    and latency percentiles (ns)."""
    out: dict[str, Any] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key, value = key.strip(), value.strip()
        if key in ("Result is", "Scenario", "Mode"):
            out[key.lower().replace(" is", "").replace(" ", "_")] = value
        elif key.endswith("satisfied"):  # why a run is INVALID: the constraint that failed says NO
            out[re.sub(r"[^a-z0-9]+", "_", key.lower()).strip("_")] = value.lower() == "yes"
        elif re.fullmatch(r"-?\d+(\.\d+)?", value) and (
            "per second" in key or "latency" in key.lower() or key.startswith("Min") or key.startswith("Max")
        ):
            out[re.sub(r"[^a-z0-9]+", "_", key.lower()).strip("_")] = float(value)
    return out


def run_loadgen(
    url: str, token: str | None, config: LoadGenConfig, out_dir: str | Path, *, transport: Any = None
) -> dict[str, Any]:
    """Run one LoadGen test against the service at `url`; write LoadGen's logs and jetfleet's report to
    `out_dir`; return the report. `transport` (an httpx transport, e.g. `httpx.MockTransport`) replaces the
    network, as in the tests."""
    try:
        import mlperf_loadgen as lg
    except ImportError:
        raise ConfigError("jetfleet loadgen needs MLCommons LoadGen (pip install 'jetfleet[loadgen]')") from None
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with httpx.Client(base_url=url, headers=headers, timeout=30, transport=transport) as client:
        fleet_energy_j(client)  # a service that cannot be reached fails here, before LoadGen starts
    sut_impl = HttpSut(lg, url, token, config, transport)
    sut = lg.ConstructSUT(sut_impl.issue_queries, sut_impl.flush_queries)
    qsl = lg.ConstructQSL(config.samples, config.samples, lambda _: None, lambda _: None)
    log = lg.LogSettings()
    log.log_output.outdir = str(out_dir)
    log.log_output.copy_summary_to_stdout = False
    try:
        with httpx.Client(base_url=url, headers=headers, timeout=30, transport=transport) as client:
            energy_before_j = fleet_energy_j(client)
            started = time.monotonic()
            lg.StartTestWithLogSettings(sut, qsl, loadgen_settings(lg, config), log)
            wall_s = time.monotonic() - started
            energy_after_j = fleet_energy_j(client)
    finally:
        lg.DestroyQSL(qsl)
        lg.DestroySUT(sut)
        sut_impl.close()
    summary_path = out_dir / SUMMARY_FILE
    energy_j = energy_after_j - energy_before_j
    record = sut_impl.record
    report = {
        "compliant": config.compliant_length,
        "note": "" if config.compliant_length else "shorter than MLPerf's 600 s minimum: not a compliant MLPerf run",
        "config": asdict(config),
        "url": url,
        "loadgen": parse_summary(summary_path.read_text()) if summary_path.exists() else {},
        "loadgen_summary_file": str(summary_path),
        "jetfleet": {
            "window_s": round(wall_s, 3),
            "requests": record.requests,
            "answers_by_status": dict(record.by_status),
            "frames_completed": record.frames_completed,
            "energy_j": round(energy_j, 3),
            "frames_per_j": round(record.frames_completed / energy_j, 4) if energy_j > 0 else None,
        },
    }
    (out_dir / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n")
    return report


def _answer_status(r: httpx.Response) -> str:
    """ "completed" for a served request; else "http-CODE" with the error body's reason ("http-429:queue_full")."""
    body = r.json() if r.content else {}
    if r.status_code == 200:
        return str(body.get("status", "completed"))
    reason = body.get("reason") if isinstance(body, dict) else None
    return f"http-{r.status_code}" + (f":{reason}" if reason else "")
