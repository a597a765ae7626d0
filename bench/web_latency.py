"""Latency of the web service on the Llama-3 x Qwen3 demo, and time from `serve --demo` to a usable page.

1. Start `xtoken-align serve --demo --workspace FRESH --port P` and time until /api/meta answers (the first
   start builds W) and until the index page and its first vocabulary page are served; stop it, start it again
   on the same workspace (reuses W) and time that too.
2. Against the second server (HTTP, keep-alive) and in-process (FastAPI TestClient, no socket), measure
   p50/p95 of paged vocabulary search (several queries, both sides; the teacher has 151k tokens), token
   detail (student row, teacher column) and the pair view of a GSM8K problem.

3. In-process, curation: the bulk preview of the first-digit policy on the unmatched `digits:3` rows (1,000
   selected) and a rebuild dry run (digits with β=1, γ=0, scored before/after on 200 GSM8K problems),
   against `build_projection` of the same pair timed in the same run.

The goals: p95 under 50 ms for token detail and paged search; bulk preview p95 under 300 ms; rebuild dry
run p95 under 2× `build`. Prints one table per client and the ratios; nothing is written outside a
temporary folder.

    python bench/web_latency.py [--repeat 50] [--skip-startup]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
if "XTOKEN_ALIGN_TOKENIZERS" not in os.environ and (SHARED / "tokenizers").is_dir():
    os.environ["XTOKEN_ALIGN_TOKENIZERS"] = str(SHARED / "tokenizers")

GOAL_MS = 50.0
TEACHER = "qwen3"
SEARCHES = [  # (label, side, query parameters)
    ("search student '345'", "student", {"q": "345"}),
    ("search student 'the'", "student", {"q": "the"}),
    ("search student regex ^\\d+$", "student", {"q": r"^\d+$", "regex": "true"}),
    ("search student digits:3 unmatched", "student", {"category": "digits:3", "matched": "false"}),
    ("search student sort=degree desc", "student", {"sort": "degree", "order": "desc"}),
    ("search teacher 'the' (151k)", "teacher", {"q": "the"}),
    ("search teacher regex ^\\d+$", "teacher", {"q": r"^\d+$", "regex": "true"}),
    ("search teacher letters:cjk p.3", "teacher", {"category": "letters:cjk", "offset": "100"}),
]
DETAIL_GOAL = {"search", "detail"}  # the rows the 50 ms goal applies to (by first word)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(workspace: Path, log: Path) -> tuple[subprocess.Popen, str, dict[str, float]]:
    """Start `serve --demo`; seconds until /api/meta answers and until the first page is usable."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [
        sys.executable,
        "-m",
        "webapp.cli",
        "serve",
        "--demo",
        "--workspace",
        str(workspace),
        "--port",
        str(port),
    ]
    started = time.perf_counter()
    with open(log, "w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    times: dict[str, float] = {}
    while "meta" not in times:
        if process.poll() is not None:
            sys.exit(f"server exited:\n{log.read_text()}")
        if time.perf_counter() - started > 600:
            process.kill()
            sys.exit("server did not answer within 600 s")
        try:
            if httpx.get(f"{url}/api/meta", timeout=5).status_code == 200:
                times["meta"] = time.perf_counter() - started
        except httpx.HTTPError:
            time.sleep(0.05)
    with httpx.Client(base_url=url, timeout=30) as client:  # what the browser asks for next
        for path in ("/", "/static/app.js", "/vendor/plotly.min.js"):
            client.get(path).raise_for_status()
        client.get("/api/vocab/student", params={"teacher": TEACHER}).raise_for_status()
    times["page"] = time.perf_counter() - started
    return process, url, times


def stop(process: subprocess.Popen) -> None:
    os.kill(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def gsm8k_problem() -> str:
    path = SHARED / "data" / "gsm8k" / "test.jsonl"
    if not path.is_file():
        from xtoken_align.corpus import default_corpus

        path = default_corpus()
    row = json.loads(path.read_text(encoding="utf-8").splitlines()[0])
    return f"{row['question']}\n{row['answer']}"


def requests(student_345: int, qwen_3: int) -> list[tuple[str, Callable]]:
    """(label, call(client) -> response) for every measured request."""
    calls: list[tuple[str, Callable]] = []
    for label, side, params in SEARCHES:
        query = {"teacher": TEACHER, "limit": "50", **params}
        calls.append((label, lambda c, side=side, query=query: c.get(f"/api/vocab/{side}", params=query)))
    calls += [
        (
            "detail student '345' (row)",
            lambda c: c.get(f"/api/tokens/student/{student_345}", params={"teacher": TEACHER}),
        ),
        ("detail teacher '3' (column)", lambda c: c.get(f"/api/tokens/teacher/{qwen_3}", params={"teacher": TEACHER})),
        ("detail student 'Ġthe'", lambda c: c.get("/api/tokens/student/279", params={"teacher": TEACHER})),
    ]
    text = gsm8k_problem()
    calls.append(
        (f"pair view GSM8K ({len(text)} chars)", lambda c: c.post("/api/pair", json={"text": text, "teacher": TEACHER}))
    )
    return calls


def measure(client, calls: list[tuple[str, Callable]], repeat: int) -> list[tuple[str, float, float, int]]:
    rows = []
    for label, call in calls:
        for _ in range(3):  # warm up
            response = call(client)
            response.raise_for_status()
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            response = call(client)
            times.append((time.perf_counter() - started) * 1000)
            response.raise_for_status()
        times.sort()
        p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
        rows.append((label, statistics.median(times), p95, len(response.content)))
    return rows


def print_table(title: str, rows: list[tuple[str, float, float, int]]) -> None:
    print(f"\n{title}")
    print(f"{'request':<38}{'p50 ms':>9}{'p95 ms':>9}{'p95/50ms':>10}{'bytes':>9}  goal")
    for label, p50, p95, size in rows:
        goal = label.split()[0] in DETAIL_GOAL
        verdict = ("ok" if p95 <= GOAL_MS else "MISSED") if goal else "-"
        print(f"{label:<38}{p50:>9.1f}{p95:>9.1f}{p95 / GOAL_MS:>10.2f}{size:>9}  {verdict}")


BULK_GOAL_MS = 300.0
REBUILD_GOAL = 2.0  # × build
FIRST_DIGIT = {"beta": 1.0, "gamma": 0.0}


def p95(times: list[float]) -> float:
    times = sorted(times)
    return times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]


def timed(call: Callable, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        out.append(time.perf_counter() - started)
    return out


def curation(client, workspace, repeat: int) -> None:
    """Bulk preview and rebuild dry run p95, against `build` of the same pair in this run."""
    from xtoken_align.config import BuildConfig, DigitsRule, default_rules
    from xtoken_align.projection import build_projection

    state = workspace.teacher(TEACHER)
    preview = {"selection": {"category": "digits:3", "matched": False}, "action": {"kind": "leading", **FIRST_DIGIT}}

    def bulk() -> None:
        response = client.post(f"/api/teachers/{TEACHER}/bulk", json=preview)
        response.raise_for_status()
        assert response.json()["selected"] == 1000

    bulk()  # warm up
    bulk_ms = [t * 1000 for t in timed(bulk, repeat)]
    rules = tuple(DigitsRule(**FIRST_DIGIT) if r.name == "digits" else r for r in default_rules())
    config = BuildConfig(rules=rules).model_dump()

    def rebuild() -> None:
        client.post(f"/api/teachers/{TEACHER}/rebuild", json={"config": config}).raise_for_status()

    rebuild()  # warm up (and the cached score of the current W)
    rounds = max(3, repeat // 10)
    build = statistics.median(timed(lambda: build_projection(workspace.student, state.vocab, progress=False), 3))
    rebuild_s = timed(rebuild, rounds)
    print(f"\ncuration, in-process (bulk: {repeat} requests; rebuild dry run: {rounds})")
    print(f"{'request':<44}{'p50':>9}{'p95':>9}{'goal':>10}{'ratio':>8}")
    print(f"{'bulk preview digits:3 unmatched (ms)':<44}{statistics.median(bulk_ms):>9.1f}{p95(bulk_ms):>9.1f}"
          f"{BULK_GOAL_MS:>10.0f}{p95(bulk_ms) / BULK_GOAL_MS:>8.2f}")  # fmt: skip
    print(f"{'build_projection Llama-3 x Qwen3 (s)':<44}{build:>9.2f}{'':>9}{'':>10}{'':>8}")
    print(f"{'rebuild dry run, digits beta=1 gamma=0 (s)':<44}{statistics.median(rebuild_s):>9.2f}"
          f"{p95(rebuild_s):>9.2f}{REBUILD_GOAL:>9.1f}x{p95(rebuild_s) / build / REBUILD_GOAL:>8.2f}")  # fmt: skip
    print(f"rebuild dry run p95 / build = {p95(rebuild_s) / build:.2f} (goal < {REBUILD_GOAL:g})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=50, help="timed requests per row (after 3 warm-up calls)")
    parser.add_argument("--skip-startup", action="store_true", help="only the in-process latencies")
    args = parser.parse_args()

    from xtoken_align.vocab import load_vocab

    llama3, qwen3 = load_vocab("demo:llama3"), load_vocab("demo:qwen3")
    calls = requests(llama3.pieces.index("345"), qwen3.pieces.index("3"))

    with tempfile.TemporaryDirectory(prefix="xtoken-bench-") as folder:
        workspace = Path(folder) / "workspace"
        if not args.skip_startup:
            process, _, first = start_server(workspace, Path(folder) / "first.log")
            stop(process)
            process, url, second = start_server(workspace, Path(folder) / "second.log")
            print(f"{'serve --demo':<38}{'/api/meta s':>12}{'first page s':>14}")
            print(f"{'first start (builds W)':<38}{first['meta']:>12.2f}{first['page']:>14.2f}")
            print(f"{'second start (same workspace)':<38}{second['meta']:>12.2f}{second['page']:>14.2f}")
            try:
                with httpx.Client(base_url=url, timeout=30) as client:
                    print_table(
                        f"HTTP to uvicorn (keep-alive), {args.repeat} requests each",
                        measure(client, calls, args.repeat),
                    )
            finally:
                stop(process)

        from fastapi.testclient import TestClient

        from webapp.app import create_app
        from webapp.settings import Settings
        from webapp.workspace import Workspace

        started = time.perf_counter()
        opened = Workspace.open(workspace, "demo:llama3", ["demo:qwen3"], log=lambda message: None)
        print(f"\nin-process Workspace open: {time.perf_counter() - started:.2f} s")
        settings = Settings(workspace, "demo:llama3", ("demo:qwen3",))
        with TestClient(create_app(settings, workspace=opened)) as client:
            print_table(f"in-process (TestClient), {args.repeat} requests each", measure(client, calls, args.repeat))
            curation(client, opened, args.repeat)


if __name__ == "__main__":
    main()
