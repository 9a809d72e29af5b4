"""Train a small byte-level BPE tokenizer in DeepSeek-V3's format (tokenizer.json + tokenizer_config.json).

No real DeepSeek-V3 checkpoint can be downloaded here, so the tests and the demo use a tokenizer trained by this
script on text we ship (test/data/tokenizer/corpus.txt). Everything about the files except the vocabulary is
DeepSeek-V3's: the pre-tokenizer (three Split regexes, each splitting the pieces the one before left, then
ByteLevel without its own regex), the byte-level decoder, the bos/eos/pad and chat/tool special tokens with
their fullwidth bars and U+2581 blanks, bos id 0 / eos id 1, a TemplateProcessing post-processor that puts bos
first, and tokenizer_config.json's chat template (DeepSeek-V3's own, see CHAT_TEMPLATE).

Training is textbook BPE: the corpus is pre-tokenized exactly as encoding will do it (the `regex` module has the
\\p{..} classes and lookahead the patterns need: Debian's python3-regex), each piece becomes its byte-level
characters, and the most frequent adjacent pair (ties: the smaller pair as strings, so a run is reproducible)
is merged until the vocabulary is full. Ids: 0 bos, 1 eos, 2 pad, the 256 byte characters in byte order, the
merges in the order learnt, then the other added tokens at the end, as DeepSeek-V3 puts them past its model
vocabulary.

CLI: python3 -m dsv3.train_tokenizer --corpus test/data/tokenizer/corpus.txt --out test/data/tokenizer
                                     [--vocab-size 1024]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
from typing import Dict, List, Tuple

import regex

# DeepSeek-V3's pre-tokenizer Split patterns, in order (tokenizer.json of deepseek-ai/DeepSeek-V3; the same as
# llama.cpp's "deepseek-v3" pre-type).
SPLIT_PATTERNS = [
    r"\p{N}{1,3}",
    r"[一-龥぀-ゟ゠-ヿ]+",
    r"[!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+"
    r"| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
]

BOS = "<｜begin▁of▁sentence｜>"
EOS = "<｜end▁of▁sentence｜>"
PAD = "<｜▁pad▁｜>"
# Added after the model vocabulary, as in DeepSeek-V3 (where they sit past id 128000). Not special: HF's
# decode(skip_special_tokens=True) keeps them, as it does for the real checkpoint.
TAIL_TOKENS = [
    "<｜User｜>",
    "<｜Assistant｜>",
    "<think>",
    "</think>",
    "<｜fim▁hole｜>",
    "<｜fim▁begin｜>",
    "<｜fim▁end｜>",
    "<｜tool▁calls▁begin｜>",
    "<｜tool▁calls▁end｜>",
    "<｜tool▁call▁begin｜>",
    "<｜tool▁call▁end｜>",
    "<｜tool▁outputs▁begin｜>",
    "<｜tool▁outputs▁end｜>",
    "<｜tool▁output▁begin｜>",
    "<｜tool▁output▁end｜>",
    "<｜tool▁sep｜>",
]

# DeepSeek-V3's chat template, verbatim from its tokenizer_config.json (deepseek-ai/DeepSeek-V3, as quoted by
# the Together model list of a public chat UI with the label "DeepSeek V3": system prompts joined by "\n\n"
# after bos, tool calls/outputs, no <think>). Jinja escapes ('\n') are part of the template text.
CHAT_TEMPLATE = (
    "{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}"
    "{% set ns = namespace(is_first=false, is_tool=false, is_output_first=true, system_prompt='', "
    "is_first_sp=true) %}{%- for message in messages %}{%- if message['role'] == 'system' %}"
    "{%- if ns.is_first_sp %}{% set ns.system_prompt = ns.system_prompt + message['content'] %}"
    "{% set ns.is_first_sp = false %}{%- else %}"
    "{% set ns.system_prompt = ns.system_prompt + '\\n\\n' + message['content'] %}{%- endif %}{%- endif %}"
    "{%- endfor %}{{bos_token}}{{ns.system_prompt}}{%- for message in messages %}"
    "{%- if message['role'] == 'user' %}{%- set ns.is_tool = false -%}{{'<｜User｜>' + message['content']}}"
    "{%- endif %}{%- if message['role'] == 'assistant' and message['content'] is none %}"
    "{%- set ns.is_tool = false -%}{%- for tool in message['tool_calls']%}{%- if not ns.is_first %}"
    "{{'<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>' + tool['type'] + '<｜tool▁sep｜>' + "
    "tool['function']['name'] + '\\n' + '```json' + '\\n' + tool['function']['arguments'] + '\\n' + '```' + "
    "'<｜tool▁call▁end｜>'}}{%- set ns.is_first = true -%}{%- else %}{{'\\n' + '<｜tool▁call▁begin｜>' + "
    "tool['type'] + '<｜tool▁sep｜>' + tool['function']['name'] + '\\n' + '```json' + '\\n' + "
    "tool['function']['arguments'] + '\\n' + '```' + '<｜tool▁call▁end｜>'}}"
    "{{'<｜tool▁calls▁end｜><｜end▁of▁sentence｜>'}}{%- endif %}{%- endfor %}{%- endif %}"
    "{%- if message['role'] == 'assistant' and message['content'] is not none %}{%- if ns.is_tool %}"
    "{{'<｜tool▁outputs▁end｜>' + message['content'] + '<｜end▁of▁sentence｜>'}}{%- set ns.is_tool = false -%}"
    "{%- else %}{{'<｜Assistant｜>' + message['content'] + '<｜end▁of▁sentence｜>'}}{%- endif %}{%- endif %}"
    "{%- if message['role'] == 'tool' %}{%- set ns.is_tool = true -%}{%- if ns.is_output_first %}"
    "{{'<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>' + message['content'] + '<｜tool▁output▁end｜>'}}"
    "{%- set ns.is_output_first = false %}{%- else %}"
    "{{'\\n<｜tool▁output▁begin｜>' + message['content'] + '<｜tool▁output▁end｜>'}}{%- endif %}{%- endif %}"
    "{%- endfor -%}{% if ns.is_tool %}{{'<｜tool▁outputs▁end｜>'}}{% endif %}"
    "{% if add_generation_prompt and not ns.is_tool %}{{'<｜Assistant｜>'}}{% endif %}"
)


def bytes_to_unicode() -> Dict[int, str]:
    """GPT-2's byte -> printable character map, the alphabet of HF's ByteLevel (de)coder."""
    printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) +
                 list(range(ord("®"), ord("ÿ") + 1)))
    chars = list(printable)
    n = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(printable, chars)}


def pre_tokenize(text: str) -> List[str]:
    """Each Split (behaviour Isolated) cuts every piece the previous one left into matches and the gaps."""
    pieces = [text]
    for pattern in SPLIT_PATTERNS:
        compiled = regex.compile(pattern)
        out = []
        for piece in pieces:
            pos = 0
            for m in compiled.finditer(piece):
                if m.start() > pos:
                    out.append(piece[pos:m.start()])
                if m.end() > m.start():
                    out.append(m.group())
                pos = m.end()
            if pos < len(piece):
                out.append(piece[pos:])
        pieces = out
    return pieces


def train(text: str, num_merges: int) -> List[Tuple[str, str]]:
    byte_chars = bytes_to_unicode()
    words: Dict[Tuple[str, ...], int] = collections.Counter()
    for piece in pre_tokenize(text):
        words[tuple(byte_chars[b] for b in piece.encode("utf-8"))] += 1
    words = dict(words)
    merges: List[Tuple[str, str]] = []
    while len(merges) < num_merges:
        pairs: Dict[Tuple[str, str], int] = collections.Counter()
        for word, count in words.items():
            for pair in zip(word, word[1:]):
                pairs[pair] += count
        if not pairs:
            break
        best = min(pairs.items(), key=lambda kv: (-kv[1], kv[0]))[0]
        merges.append(best)
        joined = best[0] + best[1]
        new_words: Dict[Tuple[str, ...], int] = {}
        for word, count in words.items():
            if len(word) > 1 and best[0] in word:
                out = []
                i = 0
                while i < len(word):
                    if i + 1 < len(word) and word[i] == best[0] and word[i + 1] == best[1]:
                        out.append(joined)
                        i += 2
                    else:
                        out.append(word[i])
                        i += 1
                word = tuple(out)
            new_words[word] = new_words.get(word, 0) + count
        words = new_words
    return merges


def added_token(token_id: int, content: str, special: bool) -> dict:
    # bos/eos/pad are matched in the raw text (normalized: false); the chat and tool tags after normalization
    # (there is no normalizer, so the same text), which exercises both of HF's added-token passes.
    return {"id": token_id, "content": content, "single_word": False, "lstrip": False, "rstrip": False,
            "normalized": not special, "special": special}


def build(text: str, vocab_size: int) -> Tuple[dict, dict]:
    byte_chars = bytes_to_unicode()
    num_merges = vocab_size - 3 - 256 - len(TAIL_TOKENS)
    if num_merges < 0:
        raise SystemExit(f"train_tokenizer: error: --vocab-size must be at least {3 + 256 + len(TAIL_TOKENS)}")
    merges = train(text, num_merges)
    vocab: Dict[str, int] = {BOS: 0, EOS: 1, PAD: 2}
    for b in range(256):
        vocab[byte_chars[b]] = len(vocab)
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    added = [added_token(0, BOS, True), added_token(1, EOS, True), added_token(2, PAD, True)]
    next_id = len(vocab)
    for content in TAIL_TOKENS:
        added.append(added_token(next_id, content, False))
        next_id += 1

    tokenizer = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": {"type": "Sequence", "normalizers": []},
        "pre_tokenizer": {
            "type": "Sequence",
            "pretokenizers": [{"type": "Split", "pattern": {"Regex": p}, "behavior": "Isolated", "invert": False}
                              for p in SPLIT_PATTERNS] +
                             [{"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False,
                               "use_regex": False}],
        },
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": BOS, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": BOS, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": BOS, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {BOS: {"id": BOS, "ids": [0], "tokens": [BOS]}},
        },
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "vocab": vocab,
            # The "a b" string form, as DeepSeek-V3's own file has it (the loader also reads [a, b] pairs).
            "merges": [f"{a} {b}" for a, b in merges],
        },
    }
    config = {
        "add_bos_token": True,
        "add_eos_token": False,
        "bos_token": {"__type": "AddedToken", "content": BOS, "lstrip": False, "normalized": True,
                      "rstrip": False, "single_word": False},
        "clean_up_tokenization_spaces": False,
        "eos_token": {"__type": "AddedToken", "content": EOS, "lstrip": False, "normalized": True,
                      "rstrip": False, "single_word": False},
        "legacy": True,
        "model_max_length": 16384,
        "pad_token": {"__type": "AddedToken", "content": EOS, "lstrip": False, "normalized": True,
                      "rstrip": False, "single_word": False},
        "sp_model_kwargs": {},
        "unk_token": None,
        "tokenizer_class": "LlamaTokenizerFast",
        "chat_template": CHAT_TEMPLATE,
    }
    return tokenizer, config


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", required=True, help="UTF-8 training text")
    parser.add_argument("--out", required=True, help="directory for tokenizer.json and tokenizer_config.json")
    parser.add_argument("--vocab-size", type=int, default=1024, help="total ids, added tokens included")
    args = parser.parse_args(argv)
    with open(args.corpus, "rb") as f:
        text = f.read().decode("utf-8")
    tokenizer, config = build(text, args.vocab_size)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tokenizer, f, ensure_ascii=False, indent=1)
        f.write("\n")
    with open(os.path.join(args.out, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, ensure_ascii=False, indent=2)
        f.write("\n")
    print(f"train_tokenizer: {len(tokenizer['model']['merges'])} merges, "
          f"{len(tokenizer['model']['vocab']) + len(TAIL_TOKENS)} ids -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
