#!/usr/bin/env python3
"""Throughput of dsv3-serve (continuous batching) at 1, 2, 4 and 8 concurrent clients on bench-450m, side by side
with single-sequence dsv3-run in the same run (docs/benchmarks.md, "Serving").

    python3 bench/serve_benchmark.py [--out out/serve-bench] [--clients 1,2,4,8] [--requests-per-client 3]
                                     [--max-tokens 64] [--rounds 2] [--threads 2]

Steps: the bench-450m bf16 checkpoint (reused from out/bench/ckpt when it exists, like run_benchmark.py) gets the
test tokenizer (test/data/tokenizer) beside its weights; it is compiled with --max-batch 8 (the server's) and with
--max-batch 1 (what one user alone compiles). Then, for each round, alternating so that the machine's noise hits
every configuration alike:
  - dsv3-run alone: the prompt's ids, --max-new-tokens N --ignore-eos (decode tok/s of one sequence), on the 1-row
    artifact (the baseline) and on the 8-row one (every row is computed, used or not: for reference);
  - dsv3-serve with C concurrent clients, each sending its requests one after the other: streaming
    /v1/completions with max_tokens N and ignore_eos, timing the first token (TTFT) and the whole reply.
Every reply must carry exactly N completion tokens (usage), so all configurations generate the same work.

Reported per C (medians over rounds): total tokens/s (all completion tokens over the wall time of the C clients),
per-request decode tokens/s, TTFT; and the ratio of the total at C clients to single-sequence dsv3-run's decode
tok/s and to the server's own at 1 client. Writes OUT/serve-benchmark.json and docs/serving-throughput.png with
--plot.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from typing import Any, Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import run_benchmark as rb  # noqa: E402  (the checkpoint generation and dsv3-run driver)

REPO = rb.REPO
PROMPTS = [
    "The quick brown fox jumps over the lazy dog, and then",
    "def fibonacci(n):\n    if n < 2:\n        return n\n",
    "In 2024 the population of the city was 1234567 people;",
    "Once upon a time, in a kingdom by the sea, there lived",
    "东京是日本的首都，也是世界上最大的城市之一。",
    "Memory bandwidth bounds the decode of large language models because",
    "Привет, мир! Это тест токенизатора и сервера.",
    "1, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144,",
]


MODEL_NAME = "bench-450m"


class RequestFailed(Exception):
    """A reply that was not what the benchmark asked for (raised in a client thread, reported by the main one)."""


def run_full_batch(runner: str, artifact: str, ckpt: str, tokens: List[int], batch: int, new_tokens: int,
                   threads: int, stats_path: str) -> Dict[str, Any]:
    """dsv3-run with `batch` sequences at once (the prompt, its first id varied per row so that the rows route
    differently), one prefill call: the decode rate of the artifact with every row in use."""
    if os.path.exists(stats_path):
        os.remove(stats_path)
    cmd = [runner, artifact, "--weights", ckpt]
    for row in range(batch):
        cmd += ["--tokens", ",".join(map(str, [tokens[0]] + [(t + row) % 1000 for t in tokens[1:]]))]
    rb.run(cmd + ["--max-new-tokens", str(new_tokens), "--threads", str(threads), "--ignore-eos",
                  "--stats-out", stats_path], "dsv3-run (full batch)")
    with open(stats_path, encoding="utf-8") as f:
        s = json.load(f)
    if s["prefill_calls"] != 1 or s["decode_tokens"] != batch * (new_tokens - 1):
        rb.die(f"unexpected full-batch stats: {s['prefill_calls']} prefill calls, {s['decode_tokens']} decode tokens")
    s.pop("generated_tokens", None)
    return s


def log(msg: str) -> None:
    print(f"serve-bench: {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """dsv3-serve on a free loopback port, until stop()."""

    def __init__(self, exe: str, artifact: str, ckpt: str, threads: int):
        self.port = free_port()
        self.proc = subprocess.Popen([exe, artifact, "--weights", ckpt, "--host", "127.0.0.1", "--port",
                                      str(self.port), "--threads", str(threads), "--model-name", MODEL_NAME],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                rb.die(f"dsv3-serve exited at start: {self.proc.stderr.read().strip()}")
            try:
                status, _ = self.request("GET", "/health")
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        rb.die("dsv3-serve did not answer /health within 300 s")

    def request(self, method: str, path: str, body: Optional[Dict[str, Any]] = None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
        try:
            conn.request(method, path, body=json.dumps(body) if body is not None else None,
                         headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def streamed_completion(port: int, prompt: str, max_tokens: int) -> Dict[str, float]:
    """One streaming /v1/completions request: seconds to the first token, to the end, and the completion tokens
    (from the final chunk's usage)."""
    body = {"model": MODEL_NAME, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "stream": True,
            "ignore_eos": True, "return_token_ids": True, "stream_options": {"include_usage": True}}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    start = time.monotonic()
    conn.request("POST", "/v1/completions", body=json.dumps(body), headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    if resp.status != 200:
        raise RequestFailed(f"/v1/completions answered {resp.status}: {resp.read()[:500]!r}")
    first = None
    tokens = None
    for raw in resp:
        line = raw.decode("utf-8").strip()
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            break
        chunk = json.loads(data)
        # The first generated token (its text may decode to nothing: bench-450m's vocab is larger than the test
        # tokenizer's, and ids past it have no text), from the chunk's token ids.
        if first is None and chunk.get("choices") and chunk["choices"][0].get("token_ids"):
            first = time.monotonic() - start
        if chunk.get("usage"):
            tokens = chunk["usage"]["completion_tokens"]
    total = time.monotonic() - start
    conn.close()
    if tokens != max_tokens:
        raise RequestFailed(f"a reply carried {tokens} completion tokens, not {max_tokens} (ignore_eos)")
    if first is None:
        raise RequestFailed("a streamed reply carried no token ids")
    return {"ttft": first, "seconds": total, "tokens": tokens}


def run_clients(port: int, clients: int, requests_per_client: int, max_tokens: int) -> Dict[str, Any]:
    results: List[Dict[str, float]] = []
    failures: List[str] = []
    lock = threading.Lock()

    def client(index: int) -> None:
        for r in range(requests_per_client):
            prompt = PROMPTS[(index + r * clients) % len(PROMPTS)]
            try:
                res = streamed_completion(port, prompt, max_tokens)
            except (RequestFailed, OSError) as e:
                with lock:
                    failures.append(str(e))
                return
            with lock:
                results.append(res)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - start
    if failures:
        rb.die(f"{len(failures)} request(s) failed, the first: {failures[0]}")
    tokens = sum(r["tokens"] for r in results)
    return {
        "clients": clients, "requests": len(results), "wall_seconds": wall,
        "total_tokens_per_second": tokens / wall,
        "per_request_tokens_per_second": statistics.median(
            (r["tokens"] - 1) / (r["seconds"] - r["ttft"]) for r in results if r["seconds"] > r["ttft"]),
        "ttft_seconds": statistics.median(r["ttft"] for r in results),
    }


def plot(result: Dict[str, Any], path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    clients = [c["clients"] for c in result["server"]]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.plot(clients, [c["total_tokens_per_second"] for c in result["server"]], "o-", label="dsv3-serve, total")
    a.plot(clients, [c["per_request_tokens_per_second"] for c in result["server"]], "s--",
           label="dsv3-serve, per request")
    a.axhline(result["single"]["decode_tokens_per_second"], color="gray", linestyle=":",
              label="dsv3-run, one sequence (1-row artifact)")
    a.axhline(result["single"]["decode_tokens_per_second_on_server_artifact"], color="gray", linestyle="-.",
              label="dsv3-run, one sequence (the server's 8-row artifact)")
    a.set_xlabel("concurrent clients")
    a.set_ylabel("generated tokens/s")
    a.set_xticks(clients)
    a.legend()
    a.set_title("bench-450m, continuous batching (max batch 8)")
    b.plot(clients, [c["ttft_seconds"] * 1000 for c in result["server"]], "o-")
    b.set_xlabel("concurrent clients")
    b.set_ylabel("time to first token (ms)")
    b.set_xticks(clients)
    b.set_title("TTFT (median)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=os.path.join(REPO, "out", "serve-bench"))
    ap.add_argument("--ckpt", default=os.path.join(REPO, "out", "bench", "ckpt"),
                    help="bench-450m checkpoint (generated when missing)")
    ap.add_argument("--build", default=os.environ.get("DSV3_BUILD_DIR", os.path.join(REPO, "build")))
    ap.add_argument("--clients", default="1,2,4,8")
    ap.add_argument("--requests-per-client", type=int, default=3)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--plot", help="write the chart (PNG) here")
    ap.add_argument("--replot", metavar="JSON", help="only draw --plot from a serve-benchmark.json")
    args = ap.parse_args(argv)
    if args.replot:
        with open(args.replot, encoding="utf-8") as f:
            plot(json.load(f), args.plot)
        return 0
    clients = [int(c) for c in args.clients.split(",")]
    bin_dir = os.path.join(args.build, "bin")
    os.makedirs(args.out, exist_ok=True)

    rb.ensure_checkpoint(args.ckpt)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy2(os.path.join(REPO, "test", "data", "tokenizer", name), os.path.join(args.ckpt, name))
    # The server's artifact has a row per client at the most; single-sequence dsv3-run gets the artifact a lone
    # user would compile (one row: the compiled code computes every row of the batch, used or not), and runs the
    # server's too for reference.
    artifacts = {}
    for rows in (1, max(clients)):
        artifacts[rows] = os.path.join(args.out, f"bench-450m-b{rows}.artifact")
        shutil.rmtree(artifacts[rows], ignore_errors=True)
        rb.run([os.path.join(bin_dir, "dsv3-compile"), args.ckpt, "-o", artifacts[rows], "--max-batch", str(rows),
                "--max-seq-len", "512"], "dsv3-compile")
    artifact = artifacts[max(clients)]

    # The same prompt for dsv3-run, as ids (the server tokenizes it the same way: dsv3-tokenize is the same library).
    # (bos first, as the server encodes a completion prompt)
    ids = subprocess.run([os.path.join(bin_dir, "dsv3-tokenize"), args.ckpt, "--encode"],
                         input=PROMPTS[0], capture_output=True, text=True, check=True).stdout
    tokens = [int(t) for t in ids.split()]

    singles, singles_on_server_artifact, full_batches = [], [], []
    servers = {c: [] for c in clients}
    stats_path = os.path.join(args.out, "stats.json")
    for rnd in range(args.rounds):
        log(f"round {rnd + 1}/{args.rounds}: dsv3-run alone")
        singles.append(rb.run_model(os.path.join(bin_dir, "dsv3-run"), artifacts[1], args.ckpt, tokens,
                                    args.max_tokens, args.threads, stats_path))
        singles_on_server_artifact.append(rb.run_model(os.path.join(bin_dir, "dsv3-run"), artifact, args.ckpt,
                                                       tokens, args.max_tokens, args.threads, stats_path))
        full_batches.append(run_full_batch(os.path.join(bin_dir, "dsv3-run"), artifact, args.ckpt, tokens,
                                           max(clients), args.max_tokens, args.threads, stats_path))
        log(f"  dsv3-run: {singles[-1]['decode_tokens_per_second']:.1f} tok/s decode (1-row artifact), "
            f"{singles_on_server_artifact[-1]['decode_tokens_per_second']:.1f} ({max(clients)}-row artifact), "
            f"{full_batches[-1]['decode_tokens_per_second']:.1f} with {max(clients)} sequences at once")
        server = Server(os.path.join(bin_dir, "dsv3-serve"), artifact, args.ckpt, args.threads)
        try:
            run_clients(server.port, 1, 1, 8)  # warm-up: first-touch of the weights and the cache
            for c in clients:
                res = run_clients(server.port, c, args.requests_per_client, args.max_tokens)
                log(f"  {c} clients: {res['total_tokens_per_second']:.1f} tok/s total, "
                    f"{res['per_request_tokens_per_second']:.1f} per request, TTFT {res['ttft_seconds']*1e3:.0f} ms")
                servers[c].append(res)
        finally:
            server.stop()

    single = {"decode_tokens_per_second": statistics.median(s["decode_tokens_per_second"] for s in singles),
              "prefill_tokens_per_second": statistics.median(s["prefill_tokens_per_second"] for s in singles),
              "rounds": [s["decode_tokens_per_second"] for s in singles],
              "decode_tokens_per_second_on_server_artifact": statistics.median(
                  s["decode_tokens_per_second"] for s in singles_on_server_artifact),
              # Every row busy at every step, no prompt steps: the most the server's decode steps can give.
              "full_batch_decode_tokens_per_second": statistics.median(
                  s["decode_tokens_per_second"] for s in full_batches)}
    rows = []
    for c in clients:
        row = {key: statistics.median(r[key] for r in servers[c])
               for key in ("total_tokens_per_second", "per_request_tokens_per_second", "ttft_seconds")}
        row["clients"] = c
        row["rounds_total_tokens_per_second"] = [r["total_tokens_per_second"] for r in servers[c]]
        rows.append(row)
    for row in rows:
        row["total_over_single_dsv3_run"] = row["total_tokens_per_second"] / single["decode_tokens_per_second"]
        row["total_over_server_one_client"] = row["total_tokens_per_second"] / rows[0]["total_tokens_per_second"]
    result = {"model": "bench-450m (bf16)", "max_batch": max(clients), "max_tokens": args.max_tokens,
              "requests_per_client": args.requests_per_client, "rounds": args.rounds, "threads": args.threads,
              "single": single, "server": rows,
              "command": "python3 bench/serve_benchmark.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    with open(os.path.join(args.out, "serve-benchmark.json"), "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
    print(json.dumps(result, indent=1))
    if args.plot:
        plot(result, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
