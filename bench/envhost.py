"""Tool calls through envhost against a bare FastAPI endpoint; episode creation and memory.

    .venv/bin/python bench/envhost.py [--quick] [--seconds 6] [--episodes 10000] [--client raw]

The servers under test run as processes of their own (``bench/envhost_server.py``: uvicorn, one
worker, loopback, a temporary SQLite database), so the load generator does not share their
interpreter. Measured in one run, with 1, 16 and 64 concurrent clients, each client working in
an episode of its own and calling the same ``lookup_capital`` function:

- (a) a synthesized tool, run in the episode's bubblewrap sandbox worker, over MCP
  (raw JSON-RPC ``tools/call`` POSTs on the sessionless 2026-07-28 revision, as the SDK sends);
- (b) the same code in process (a trusted builtin kind), over the same MCP endpoint;
- (c) a bare FastAPI JSON POST endpoint running the same function (the baseline).

Then, on a fresh envhost, episodes created per second over REST (32 in flight) until
``--episodes`` are open, and the resident memory of the server holding them.

Episodes are created, and every reply's wire format checked once, with one shared
``httpx.AsyncClient``. The load itself goes through keep-alive connections that replay prepared
requests (``--client raw``, the default), because on this machine an ``httpx.AsyncClient`` under
concurrency costs the client more CPU per call than the servers spend: ``--client httpx`` shows
those client-bound figures. envhost writes calls and episodes to its database behind the
requests; the bench waits for those writes after each run and reports their cost separately.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import itertools
import json
import os
import platform
import shlex
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import mcp_types
from mcp.shared.inbound import MCP_METHOD_HEADER, MCP_NAME_HEADER, MCP_PROTOCOL_VERSION_HEADER

from astra.redis_server import free_port

SERVER_SCRIPT = Path(__file__).with_name("envhost_server.py")
PROTOCOL_VERSION = "2026-07-28"
TOOL_NAME = "lookup_capital"
TOOL_ARGUMENTS = {"country": "France"}
TOOL_RESULT = {"country": "France", "capital": "Paris"}
CONCURRENCY = (1, 16, 64)
BARE, INPROCESS, SANDBOXED = "(c) bare FastAPI", "(b) envhost in-process", "(a) envhost sandboxed"
CREATE_IN_FLIGHT = 32
GiB = 1024**3
MiB = 1024**2

# Targets of the issue.
MIN_INPROCESS_RATIO = 0.8
MAX_SANDBOX_P50_MS = 1.0
MAX_EPISODES_RSS = 2 * GiB
MIN_EPISODES_PER_S = 200.0
RSS_TARGET_EPISODES = 10_000

Send = Callable[[], Awaitable[None]]


# -- processes ---------------------------------------------------------------------------------


@dataclass
class Server:
    """A server under test, running in a child process."""

    process: asyncio.subprocess.Process
    ready: dict[str, str]

    @property
    def url(self) -> str:
        return self.ready["url"]

    @property
    def pid(self) -> int:
        return self.process.pid


@contextlib.asynccontextmanager
async def server(*args: str) -> AsyncIterator[Server]:
    """Start ``envhost_server.py ARGS`` and wait for its ready line; stop it afterwards."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(SERVER_SCRIPT), *args, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 60)
        if not line:
            raise RuntimeError(f"server {args[0]} exited before it was ready")
        yield Server(process, json.loads(line))
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 60)
            except TimeoutError:
                process.kill()
                await process.wait()


def process_tree(root: int) -> list[int]:
    """``root`` and every live descendant of it."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_bytes()
        except OSError:
            continue
        parent = int(stat.rsplit(b")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry))
    tree, pending = [], [root]
    while pending:
        pid = pending.pop()
        tree.append(pid)
        pending.extend(children.get(pid, []))
    return tree


def rss_bytes(pid: int) -> int:
    """VmRSS of one process (0 when it is gone)."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_s() -> float:
    """CPU seconds every process on the machine has used (all cores), from /proc/stat."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split()[1:9]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def tree_cpu(root: int) -> tuple[float, float]:
    """CPU seconds of ``root`` itself and of its live descendants (the sandbox workers)."""
    own = cpu_seconds(root)
    return own, sum(cpu_seconds(pid) for pid in process_tree(root) if pid != root)


# -- requests ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One prepared POST, replayed back to back, and what a good reply to it looks like."""

    url: str
    body: bytes
    headers: dict[str, str]
    status: int = 200
    mcp: bool = False

    def ok(self, status: int, content: bytes) -> bool:
        return status == self.status and not (self.mcp and b'"isError":true' in content)

    def fail(self, status: int, content: bytes) -> RuntimeError:
        return RuntimeError(f"POST {self.url}: {status} {content[:300]!r}")


def tool_call(mcp_url: str) -> Call:
    """A ``tools/call`` on the 2026-07-28 revision, with the headers and body the SDK sends."""
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {
            "name": TOOL_NAME,
            "arguments": TOOL_ARGUMENTS,
            "_meta": {
                mcp_types.PROTOCOL_VERSION_META_KEY: PROTOCOL_VERSION,
                mcp_types.CLIENT_INFO_META_KEY: {"name": "astra-bench", "version": "0"},
                mcp_types.CLIENT_CAPABILITIES_META_KEY: {},
            },
        },
    }
    headers = {
        "accept": "application/json, text/event-stream",
        "content-type": "application/json",
        MCP_PROTOCOL_VERSION_HEADER: PROTOCOL_VERSION,
        MCP_METHOD_HEADER: "tools/call",
        MCP_NAME_HEADER: TOOL_NAME,
    }
    return Call(mcp_url, json.dumps(body, separators=(",", ":")).encode(), headers, mcp=True)


def bare_call(url: str) -> Call:
    """The same arguments as a plain JSON POST."""
    return Call(url, json.dumps(TOOL_ARGUMENTS).encode(), {"content-type": "application/json"})


async def check(http: httpx.AsyncClient, call: Call) -> None:
    """One call with full validation: a successful ``CallToolResult`` with the expected output."""
    response = await http.post(call.url, content=call.body, headers=call.headers)
    if response.status_code != call.status:
        raise call.fail(response.status_code, response.content)
    reply = response.json()
    if call.mcp:
        result = mcp_types.CallToolResult.model_validate(reply["result"])
        if result.is_error:
            raise call.fail(response.status_code, response.content)
        reply = result.structured_content
    if reply != TOOL_RESULT:
        raise call.fail(response.status_code, response.content)


class Connection:
    """A keep-alive HTTP/1.1 connection that replays one prepared request (the load generator).

    It costs the client 50-140 µs of CPU per call. A shared ``httpx.AsyncClient`` costs 0.8 to
    6.6 ms per call here (its pool checks every connection on each request), so the client's own
    core caps the rate below what the servers serve: see ``--client httpx``.
    """

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, call: Call
    ) -> None:
        self.reader, self.writer, self.call = reader, writer, call
        target = urlsplit(call.url)
        lines = [f"POST {target.path} HTTP/1.1", f"host: {target.netloc}"]
        lines += [f"{name}: {value}" for name, value in call.headers.items()]
        lines.append(f"content-length: {len(call.body)}")
        self.request = ("\r\n".join(lines) + "\r\n\r\n").encode() + call.body

    @classmethod
    async def open(cls, call: Call) -> Connection:
        target = urlsplit(call.url)
        reader, writer = await asyncio.open_connection(target.hostname, target.port)
        return cls(reader, writer, call)

    async def send(self) -> None:
        self.writer.write(self.request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        marker = head.lower().find(b"\r\ncontent-length:")
        if marker < 0:
            raise RuntimeError(f"reply without content-length from {self.call.url}: {head!r}")
        length = int(head[marker + 17 : head.index(b"\r\n", marker + 2)])
        content = await self.reader.readexactly(length)
        if not self.call.ok(status, content):
            raise self.call.fail(status, content)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


@dataclass
class Client:
    """How the load generator sends: raw keep-alive connections, or one shared httpx client."""

    http: httpx.AsyncClient
    raw: bool
    connections: list[Connection] = field(default_factory=list)

    async def sender(self, call: Call) -> Send:
        if self.raw:
            connection = await Connection.open(call)
            self.connections.append(connection)
            return connection.send
        http = self.http

        async def send() -> None:
            response = await http.post(call.url, content=call.body, headers=call.headers)
            if not call.ok(response.status_code, response.content):
                raise call.fail(response.status_code, response.content)

        return send

    async def aclose(self) -> None:
        for connection in self.connections:
            await connection.close()
        self.connections.clear()


@contextlib.asynccontextmanager
async def client(raw: bool, connections: int) -> AsyncIterator[Client]:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=None)
    async with httpx.AsyncClient(limits=limits, timeout=60) as http:
        load = Client(http, raw)
        try:
            yield load
        finally:
            await load.aclose()


# -- tool calls ----------------------------------------------------------------------------------


@dataclass
class Run:
    """One measured load: a variant at a concurrency."""

    variant: str
    clients: int
    calls: int
    warmup_calls: int
    seconds: float
    p50_ms: float
    p99_ms: float
    server_cpu_s: float
    worker_cpu_s: float
    client_cpu_s: float
    machine_cpu_s: float
    journal_lag_s: float = 0.0
    journal_cpu_s: float = 0.0

    @property
    def calls_per_s(self) -> float:
        return self.calls / self.seconds

    @property
    def others_share(self) -> float:
        """Share of the machine's CPU that processes outside this benchmark used meanwhile."""
        ours = self.server_cpu_s + self.worker_cpu_s + self.client_cpu_s
        return max(0.0, self.machine_cpu_s - ours) / (self.seconds * (os.cpu_count() or 1))

    def us_per_call(self, cpu_seconds: float) -> float:
        return cpu_seconds / self.calls * 1e6


async def drive(senders: list[Send], seconds: float) -> tuple[list[float], float]:
    """Every sender calls back to back until ``seconds`` are up; per-call latencies, elapsed."""
    latencies: list[list[float]] = [[] for _ in senders]
    started = time.perf_counter()
    deadline = started + seconds

    async def loop(send: Send, into: list[float]) -> None:
        clock = time.perf_counter
        while (before := clock()) < deadline:
            await send()
            into.append(clock() - before)

    await asyncio.gather(*(loop(send, into) for send, into in zip(senders, latencies, strict=True)))
    elapsed = time.perf_counter() - started
    return [value for values in latencies for value in values], elapsed


async def measure(
    variant: str, senders: list[Send], server_pid: int, seconds: float, warmup: float
) -> Run:
    warmup_latencies, _ = await drive(senders, warmup)
    machine_before = machine_busy_s()
    server_before, client_before = tree_cpu(server_pid), time.process_time()
    latencies, elapsed = await drive(senders, seconds)
    server_after, client_after = tree_cpu(server_pid), time.process_time()
    machine_after = machine_busy_s()
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return Run(
        variant=variant,
        clients=len(senders),
        calls=len(latencies),
        warmup_calls=len(warmup_latencies),
        seconds=elapsed,
        p50_ms=cuts[49] * 1000,
        p99_ms=cuts[98] * 1000,
        server_cpu_s=server_after[0] - server_before[0],
        worker_cpu_s=server_after[1] - server_before[1],
        client_cpu_s=client_after - client_before,
        machine_cpu_s=machine_after - machine_before,
    )


def stored_rows(path: Path, table: str) -> int:
    with contextlib.closing(sqlite3.connect(path, timeout=30)) as connection:
        count: int = connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        return count


async def journal_caught_up(path: Path, table: str, rows: int, pid: int) -> tuple[float, float]:
    """Wait until ``table`` holds ``rows`` rows (envhost writes behind, in batches).

    Returns how long that took and the CPU seconds the server spent meanwhile.
    """
    started, cpu_before = time.perf_counter(), cpu_seconds(pid)
    while (stored := stored_rows(path, table)) < rows:
        if time.perf_counter() - started > 300:
            raise RuntimeError(f"the journal wrote {stored} of {rows} {table} rows in 300 s")
        await asyncio.sleep(0.05)
    return time.perf_counter() - started, cpu_seconds(pid) - cpu_before


async def create_episode(http: httpx.AsyncClient, base: str, env_id: str) -> dict[str, Any]:
    response = await http.post(f"{base}/v1/episodes", json={"env_id": env_id})
    if response.status_code != 201:
        raise RuntimeError(f"creating an episode failed: {response.status_code} {response.text}")
    episode: dict[str, Any] = response.json()
    return episode


async def bench_calls(raw: bool, seconds: float, warmup: float) -> list[Run]:
    """(a), (b), (c) at each concurrency, on one envhost and one bare app.

    After each envhost run the bench waits for the journal to write every call, so that no
    run pays for the previous one's deferred writes; that wait is reported as journal lag.
    """
    clients = max(CONCURRENCY)
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "calls.db"
        async with (
            server(
                "envhost", "--port", str(free_port()), "--database-url", sqlite_url(path)
            ) as host,
            server("fastapi", "--port", str(free_port())) as bare,
            client(raw, 3 * clients) as load,
        ):
            calls = {BARE: [bare_call(f"{bare.url}/lookup") for _ in range(clients)]}
            for label, env_key in ((INPROCESS, "inprocess_env"), (SANDBOXED, "synthetic_env")):
                episodes = await asyncio.gather(
                    *(
                        create_episode(load.http, host.url, host.ready[env_key])
                        for _ in range(clients)
                    )
                )
                calls[label] = [tool_call(episode["mcp_url"]) for episode in episodes]
            # One validated call per client proves the wire and starts each sandbox worker.
            for prepared in calls.values():
                await asyncio.gather(*(check(load.http, call) for call in prepared))
            journaled = 2 * clients
            runs = []
            for count in CONCURRENCY:
                for label, prepared in calls.items():
                    pid = bare.pid if label == BARE else host.pid
                    # Fresh connections per run: servers close keep-alive ones idle for 5 s.
                    sends = [await load.sender(call) for call in prepared[:count]]
                    run = await measure(label, sends, pid, seconds, warmup)
                    await load.aclose()
                    if label != BARE:
                        journaled += run.warmup_calls + run.calls
                        lag, cpu = await journal_caught_up(path, "episode_calls", journaled, pid)
                        run.journal_lag_s, run.journal_cpu_s = lag, cpu
                    runs.append(run)
                    print(f"  {count:>3} clients  {label:<24} done", file=sys.stderr)
            return runs


# -- episodes ------------------------------------------------------------------------------------


@dataclass
class EpisodeFigures:
    episodes: int
    seconds: float
    slowest_block_per_s: float
    server_cpu_s: float
    client_cpu_s: float
    rss_idle: int
    rss_open: int
    rss_flushed: int
    processes: int
    journal_lag_s: float
    journal_cpu_s: float
    others_share: float

    @property
    def per_s(self) -> float:
        return self.episodes / self.seconds

    @property
    def persisted_per_s(self) -> float:
        return self.episodes / (self.seconds + self.journal_lag_s)

    def per_episode(self, rss: int) -> float:
        return (rss - self.rss_idle) / self.episodes


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


def tree_rss(pid: int) -> tuple[int, int]:
    """Summed VmRSS of ``pid`` and its descendants, and how many processes that is."""
    tree = process_tree(pid)
    return sum(rss_bytes(member) for member in tree), len(tree)


async def bench_episodes(raw: bool, total: int) -> EpisodeFigures:
    """Create ``total`` episodes, ``CREATE_IN_FLIGHT`` at a time, on a fresh envhost."""
    block = 1000
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "episodes.db"
        args = ["--database-url", sqlite_url(path), "--max-episodes", str(total + 64)]
        async with (
            server("envhost", "--port", str(free_port()), *args) as host,
            client(raw, CREATE_IN_FLIGHT) as load,
        ):
            create = Call(
                f"{host.url}/v1/episodes",
                json.dumps({"env_id": host.ready["synthetic_env"]}).encode(),
                {"content-type": "application/json"},
                status=201,
            )
            senders = [await load.sender(create) for _ in range(CREATE_IN_FLIGHT)]
            await asyncio.sleep(1.0)  # let start-up settle before the baseline
            rss_idle, _ = tree_rss(host.pid)
            remaining = total
            stamps: list[float] = []

            async def creator(send: Send) -> None:
                nonlocal remaining
                while remaining > 0:
                    remaining -= 1
                    await send()
                    stamps.append(time.perf_counter())

            machine_before = machine_busy_s()
            server_before, client_before = cpu_seconds(host.pid), time.process_time()
            started = time.perf_counter()
            await asyncio.gather(*(creator(send) for send in senders))
            elapsed = time.perf_counter() - started
            server_cpu = cpu_seconds(host.pid) - server_before
            client_cpu = time.process_time() - client_before
            others = machine_busy_s() - machine_before - server_cpu - client_cpu
            rss_open, processes = tree_rss(host.pid)
            lag, journal_cpu = await journal_caught_up(path, "episodes", total, host.pid)
            await asyncio.sleep(1.0)
            rss_flushed, _ = tree_rss(host.pid)
            listed = (await load.http.get(f"{host.url}/v1/episodes")).json()
            if len(listed) != total:
                raise RuntimeError(f"{len(listed)} episodes open, expected {total}")
            edges = [started, *stamps[block - 1 :: block]]
            blocks = [block / (end - begin) for begin, end in itertools.pairwise(edges)]
            return EpisodeFigures(
                episodes=total,
                seconds=elapsed,
                slowest_block_per_s=min(blocks, default=total / elapsed),
                server_cpu_s=server_cpu,
                client_cpu_s=client_cpu,
                rss_idle=rss_idle,
                rss_open=rss_open,
                rss_flushed=rss_flushed,
                processes=processes,
                journal_lag_s=lag,
                journal_cpu_s=journal_cpu,
                others_share=max(0.0, others) / (elapsed * (os.cpu_count() or 1)),
            )


# -- report --------------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def report_calls(runs: list[Run]) -> tuple[list[bool], list[bool]]:
    print(
        f"{'clients':>7}  {'variant':<24}{'calls/s':>8}{'p50 ms':>8}{'p99 ms':>8}  | CPU µs per "
        f"call: {'server':>6}{'+journal':>9}{'sandbox':>8}{'client':>7}  | journal lag s | others"
    )
    for run in runs:
        worker = run.us_per_call(run.worker_cpu_s) if run.variant == SANDBOXED else None
        journal = run.variant != BARE
        print(
            f"{run.clients:>7}  {run.variant:<24}{run.calls_per_s:8.0f}{run.p50_ms:8.2f}"
            f"{run.p99_ms:8.2f}  | {'':<14}{run.us_per_call(run.server_cpu_s):6.0f}"
            + (f"{run.us_per_call(run.journal_cpu_s):9.0f}" if journal else " " * 9)
            + (f"{worker:8.0f}" if worker is not None else " " * 8)
            + f"{run.us_per_call(run.client_cpu_s):7.0f}  |"
            + (f" {run.journal_lag_s:13.1f}" if journal else " " * 14)
            + f" | {run.others_share:5.0%}"
        )
    print()
    print(
        "journal: the server's CPU, after the run, writing its calls to the database (lag: how "
        "long that took); others: the machine's CPU used by processes outside the benchmark"
    )
    print()
    ratio_ok, delta_ok = [], []
    print(f"{'clients':>7}  {'(b)/(c) calls/s':>16}  {'≥ 0.8':<6}{'(a)-(b) p50 ms':>16}  ≤ 1 ms")
    for count in CONCURRENCY:
        by_variant = {run.variant: run for run in runs if run.clients == count}
        ratio = by_variant[INPROCESS].calls_per_s / by_variant[BARE].calls_per_s
        delta = by_variant[SANDBOXED].p50_ms - by_variant[INPROCESS].p50_ms
        ratio_ok.append(ratio >= MIN_INPROCESS_RATIO)
        delta_ok.append(delta <= MAX_SANDBOX_P50_MS)
        print(
            f"{count:>7}  {ratio:16.2f}  {verdict(ratio_ok[-1]):<6}{delta:16.2f}  "
            f"{verdict(delta_ok[-1])}"
        )
    return ratio_ok, delta_ok


def report_episodes(figures: EpisodeFigures) -> int:
    """Print the episode figures; returns the RSS to judge against the 10,000-episode target."""
    count = figures.episodes
    print(
        f"episodes: {count} created over REST, {CREATE_IN_FLIGHT} in flight, in "
        f"{figures.seconds:.1f} s: {figures.per_s:.0f}/s (slowest 1,000: "
        f"{figures.slowest_block_per_s:.0f}/s; others {figures.others_share:.0%})"
    )
    print(
        f"  CPU µs per episode: server {figures.server_cpu_s / count * 1e6:.0f} "
        f"+ journal {figures.journal_cpu_s / count * 1e6:.0f} after the last create, "
        f"client {figures.client_cpu_s / count * 1e6:.0f}"
    )
    print(
        f"  all {count} in the database {figures.journal_lag_s:.1f} s after the last create: "
        f"{figures.persisted_per_s:.0f} episodes/s created and persisted"
    )
    print(f"  RSS, idle server:                {figures.rss_idle / MiB:7.1f} MiB")
    print(
        f"  RSS, {count:>6} episodes open:      {figures.rss_open / MiB:7.1f} MiB"
        f"  ({figures.per_episode(figures.rss_open) / 1024:.1f} KiB per episode, "
        f"{figures.processes} process(es))"
    )
    print(
        f"  RSS, after the journal caught up: {figures.rss_flushed / MiB:7.1f} MiB"
        f"  ({figures.per_episode(figures.rss_flushed) / 1024:.1f} KiB per episode)"
    )
    rss = max(figures.rss_open, figures.rss_flushed)
    if count != RSS_TARGET_EPISODES:
        rss = int(figures.rss_idle + figures.per_episode(rss) * RSS_TARGET_EPISODES)
        print(f"  extrapolated to {RSS_TARGET_EPISODES} open: {rss / MiB:.1f} MiB")
    return rss


def report(runs: list[Run], episodes: EpisodeFigures, raw: bool, seconds: float) -> None:
    print(f"machine: {os.cpu_count()} CPUs, {cpu_model()}, Python {platform.python_version()}")
    print(f"command: {shlex.join(['.venv/bin/python', *sys.argv])}")
    generator = "raw keep-alive HTTP/1.1 connections" if raw else "one shared httpx.AsyncClient"
    print(f"load generator: {generator}; {seconds:g} s per run; one episode per client")
    print()
    ratio_ok, delta_ok = report_calls(runs)
    print()
    rss = report_episodes(episodes)
    print()

    def levels(oks: list[bool]) -> str:
        return ", ".join(f"{n}: {verdict(ok)}" for n, ok in zip(CONCURRENCY, oks, strict=True))

    print("targets")
    print(f"  (b)/(c) calls/s ≥ 0.8 at every concurrency ({levels(ratio_ok)}): ", end="")
    print(verdict(all(ratio_ok)))
    print(f"  sandbox adds ≤ 1 ms at p50 over (b), 1 client ({levels(delta_ok)}): ", end="")
    print(verdict(delta_ok[0]))
    print(
        f"  {RSS_TARGET_EPISODES} open episodes < 2 GiB: {rss / MiB:.0f} MiB: "
        f"{verdict(rss < MAX_EPISODES_RSS)}"
    )
    print(
        f"  ≥ 200 episodes created/s: {episodes.per_s:.0f}/s: "
        f"{verdict(episodes.per_s >= MIN_EPISODES_PER_S)} "
        f"({episodes.persisted_per_s:.0f}/s counting the journal: "
        f"{verdict(episodes.persisted_per_s >= MIN_EPISODES_PER_S)})"
    )


async def bench(raw: bool, seconds: float, warmup: float, episodes: int) -> None:
    runs = await bench_calls(raw, seconds, warmup)
    figures = await bench_episodes(raw, episodes)
    report(runs, figures, raw, seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="1 s runs, 1,000 episodes")
    parser.add_argument("--seconds", type=float, default=None, help="per run (default 6)")
    parser.add_argument("--episodes", type=int, default=None, help="to open (default 10000)")
    parser.add_argument(
        "--client",
        choices=["raw", "httpx"],
        default="raw",
        help="load generator: raw keep-alive connections, or one shared httpx.AsyncClient",
    )
    args = parser.parse_args()
    if importlib.util.find_spec("sniffio") is None:
        # httpcore tries `import sniffio` for every request; absent, each try searches all of
        # sys.path again (~0.3 ms). A None entry makes it fail at once, with the same outcome.
        sys.modules["sniffio"] = None  # type: ignore[assignment]
    seconds = args.seconds or (1.0 if args.quick else 6.0)
    episodes = args.episodes or (1000 if args.quick else RSS_TARGET_EPISODES)
    warmup = 0.2 if args.quick else 1.0
    asyncio.run(bench(args.client == "raw", seconds, warmup, episodes))


if __name__ == "__main__":
    main()
