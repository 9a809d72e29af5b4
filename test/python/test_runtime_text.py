"""dsv3-run's text modes (--prompt, --chat) on a compiled random model whose checkpoint carries the test tokenizer
(test/data/tokenizer, via generate_model --tokenizer).

Independent paths: the ids a text run generates must be those of `dsv3-run --tokens` with the same prompt ids, and
the text it streams must be those ids decoded here (byte-level BPE inverted from tokenizer.json in a few lines of
Python). Tools from $DSV3_BUILD_DIR/bin (set by ctest), else build/bin."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.join(os.environ.get("DSV3_BUILD_DIR", os.path.join(ROOT, "build")), "bin")
TOKENIZER_DIR = os.path.join(ROOT, "test", "data", "tokenizer")
DSV3_RUN = os.path.join(BIN, "dsv3-run")

pytestmark = pytest.mark.skipif(
    not (os.path.exists(DSV3_RUN) and os.path.exists(os.path.join(BIN, "dsv3-compile"))),
    reason="needs dsv3-run and dsv3-compile in " + BIN)

MAX_SEQ_LEN = 4096  # long enough for a reply that Ctrl-C can catch midway


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    base = tmp_path_factory.mktemp("text")
    ckpt, art = base / "ckpt", base / "art"
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "python"))
    subprocess.run([sys.executable, "-m", "dsv3.generate_model", "--preset", "tiny", "--tokenizer", TOKENIZER_DIR,
                    "--out", str(ckpt)], check=True, env=env, capture_output=True)
    subprocess.run([os.path.join(BIN, "dsv3-compile"), str(ckpt), "-o", str(art), "--max-batch", "2",
                    "--max-seq-len", str(MAX_SEQ_LEN)], check=True, capture_output=True)
    return str(art), str(ckpt)


def bytes_of_tokens():
    """id -> bytes of every token (GPT-2 byte-level alphabet inverted); special tokens -> None."""
    with open(os.path.join(TOKENIZER_DIR, "tokenizer.json"), encoding="utf-8") as f:
        tok = json.load(f)
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    chars, n = {}, 0
    for b in range(256):
        if b in printable:
            chars[chr(b)] = b
        else:
            chars[chr(256 + n)] = b
            n += 1
    # Added tokens (also in the vocab: bos, eos, pad) are their text, not byte-level pieces.
    added_ids = {a["id"] for a in tok.get("added_tokens") or []}
    table = {i: bytes(chars[c] for c in piece) for piece, i in tok["model"]["vocab"].items() if i not in added_ids}
    for added in tok.get("added_tokens") or []:
        table[added["id"]] = None if added.get("special") else added["content"].encode()
    return table


def decode(ids):
    table = bytes_of_tokens()
    return b"".join(table[i] for i in ids if table.get(i) is not None).decode("utf-8", errors="replace")


def run(model, *args, stdin=None):
    art, ckpt = model
    return subprocess.run([DSV3_RUN, art, "--weights", ckpt, *args], input=stdin, capture_output=True, text=True)


def ids_after(label, text):
    m = re.search(r"^" + re.escape(label) + r": ?([0-9,]*)$", text, re.M)
    assert m, (label, text)
    return [int(x) for x in m.group(1).split(",") if x]


def test_prompt_equals_tokens(model):
    r = run(model, "--prompt", "Hello world, this is a test of the text mode.", "--max-new-tokens", "20",
            "--ignore-eos", "--print-ids")
    assert r.returncode == 0, r.stderr
    prompt = ids_after("prompt ids", r.stdout)
    generated = ids_after("sequence 0", r.stdout)
    assert prompt[0] == 0 and len(prompt) > 5  # bos (add_bos_token), then the text
    assert len(generated) == 20
    alone = run(model, "--tokens", ",".join(map(str, prompt)), "--max-new-tokens", "20", "--ignore-eos")
    assert alone.returncode == 0, alone.stderr
    assert ids_after("sequence 0", alone.stdout) == generated
    # Streamed text first, then a newline, the ids and the throughput.
    text = r.stdout[:r.stdout.index("\nprompt ids: ")]
    assert text == decode(generated)
    assert re.search(r"^prefill: \d+ tokens in [0-9.]+ s \([0-9.]+ tokens/s\)$", r.stdout, re.M)
    assert re.search(r"^decode: 19 tokens in [0-9.]+ s \([0-9.]+ tokens/s\)$", r.stdout, re.M)
    # Without --print-ids: the text and the throughput only.
    plain = run(model, "--prompt", "Hello world, this is a test of the text mode.", "--max-new-tokens", "20",
                "--ignore-eos")
    assert plain.returncode == 0 and plain.stdout.startswith(text + "\nprefill: ")


def test_chat_two_turns(model):
    r = run(model, "--chat", "--max-new-tokens", "12", "--print-ids",
            stdin="Hello there\nHow are you today?\n")
    assert r.returncode == 0, r.stderr
    prompts = [[int(x) for x in m.split(",")] for m in re.findall(r"^prompt ids: ([0-9,]+)$", r.stdout, re.M)]
    replies = [[int(x) for x in m.split(",") if x] for m in re.findall(r"^reply ids: ([0-9,]*)$", r.stdout, re.M)]
    stats = re.findall(r"^\[(\d+) tokens; prefill (\d+) tokens, [0-9.]+ tokens/s; decode [0-9.]+ tokens/s\]$",
                       r.stdout, re.M)
    assert len(prompts) == len(replies) == len(stats) == 2, r.stdout
    user, assistant, eos = 1008, 1009, 1
    # Turn 1: bos, <|User|> text <|Assistant|>.
    assert prompts[0][:2] == [0, user] and prompts[0][-1] == assistant
    # Turn 2 keeps the history: turn 1's prompt, the reply and its eos, the new user turn.
    p2 = prompts[1]
    assert p2[:len(prompts[0])] == prompts[0]
    rest = p2[len(prompts[0]):]
    assert eos in rest and rest[rest.index(eos) + 1] == user and p2[-1] == assistant
    for prompt, reply, (count, prefill) in zip(prompts, replies, stats):
        assert int(count) == len(reply) and int(prefill) == len(prompt)
        alone = run(model, "--tokens", ",".join(map(str, prompt)), "--max-new-tokens", "12")
        assert ids_after("sequence 0", alone.stdout) == reply
    # The first reply streamed as its decoded text.
    assert r.stdout.startswith(decode(replies[0]) + "\nprompt ids: ")


def test_chat_reset_exit_and_a_conversation_too_long(model):
    long_line = " ".join("w%dq" % i for i in range(3000))
    r = run(model, "--chat", "--max-new-tokens", "4", "--system", "Be brief.",
            stdin="Hi\n" + long_line + "\n/reset\nAgain\n/exit\nnever read\n")
    assert r.returncode == 0, r.stderr
    m = re.search(r"^\[the conversation is now (\d+) tokens: it no longer fits the artifact's max sequence length "
                  r"of %d; /reset starts a new one\]$" % MAX_SEQ_LEN, r.stdout, re.M)
    assert m and int(m.group(1)) > MAX_SEQ_LEN, r.stdout
    assert "[new conversation]" in r.stdout
    # Replies to "Hi" and "Again" only.
    assert len(re.findall(r"^\[\d+ tokens; prefill", r.stdout, re.M)) == 2


def test_ctrl_c_stops_a_reply_not_the_program(model):
    art, ckpt = model
    p = subprocess.Popen([DSV3_RUN, art, "--weights", ckpt, "--chat", "--ignore-eos", "--max-new-tokens", "4000"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stats_line = re.compile(rb"^\[(stopped; )?(\d+) tokens; prefill (\d+) tokens")
    try:
        p.stdin.write(b"Tell me a long story\n")
        p.stdin.flush()
        p.stdout.read(1)  # the reply has started
        p.send_signal(signal.SIGINT)
        while True:
            line = p.stdout.readline()
            first = stats_line.match(line)
            if first or not line:
                break
        # Waiting for input now: Ctrl-C does nothing.
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(input=b"And another one\n", timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
    out = b"\n" + out
    assert p.returncode == 0, err
    assert first and first.group(1) and int(first.group(2)) < 4000  # stopped midway
    stats = re.findall(stats_line.pattern, out, re.M)
    assert len(stats) == 1, out[-500:]
    # The second reply (the stopped one is in its history) is not affected by either Ctrl-C: it runs to the end.
    stopped, count, prefill = stats[0]
    assert not stopped and int(count) == min(4000, MAX_SEQ_LEN - int(prefill))


def test_text_mode_errors(model, tmp_path):
    art, ckpt = model
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(os.path.join(ckpt, name), bare / name)
    cases = [
        ([art, "--weights", str(bare), "--prompt", "hi"], "tokenizer.json"),
        ([art, "--weights", str(bare), "--chat"], "tokenizer.json"),
        ([art, "--weights", ckpt, "--prompt", ""], "--prompt is empty"),
        ([art, "--weights", ckpt, "--prompt", "hi", "--tokens", "1,2"], "exclude each other"),
        ([art, "--weights", ckpt, "--chat", "--stats-out", str(tmp_path / "s.json")], "--chat writes no files"),
        ([art, "--weights", ckpt, "--tokens", "1,2", "--print-ids"], "--print-ids is for"),
        ([art, "--weights", ckpt, "--chat", "--top-p", "0"], "top-p must be in (0, 1]"),
    ]
    for args, message in cases:
        r = subprocess.run([DSV3_RUN, *args], capture_output=True, text=True, stdin=subprocess.DEVNULL)
        assert r.returncode == 1, (args, r.stdout, r.stderr)
        assert r.stdout == "", args
        lines = r.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("dsv3-run: error: ") and message in lines[0], (args, lines)
    assert not (tmp_path / "s.json").exists()
