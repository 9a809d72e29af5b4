// dsv3's tokenizer (through dsv3-tokenize) against independent implementations:
//   - HF `tokenizers` (the Rust library, native binary from npm) reading the same
//     tokenizer.json: identical ids for every paragraph and line of a fixed corpus, with
//     and without bos, and identical decoded text (also for random id sequences, most of
//     which are not valid UTF-8);
//   - @huggingface/jinja rendering the chat_template string of tokenizer_config.json:
//     byte-identical prompts for several conversations.
// The binaries are found in $DSV3_BUILD_DIR/bin (default /work/main/build).
// Run: node --test test/node/tokenizer.test.mjs   (ctest: node-tokenizer)

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const { Tokenizer } = require('tokenizers');
const { Template } = require('@huggingface/jinja');

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..', '..');
const dataDir = path.join(root, 'test', 'data', 'tokenizer');
const buildDir = process.env.DSV3_BUILD_DIR || '/work/main/build';
const tool = path.join(buildDir, 'bin', 'dsv3-tokenize');

const hf = Tokenizer.fromFile(path.join(dataDir, 'tokenizer.json'));
const config = JSON.parse(fs.readFileSync(path.join(dataDir, 'tokenizer_config.json'), 'utf8'));
const tokenText = (t) => (typeof t === 'string' ? t : t.content);

function run(args, input) {
  assert.ok(fs.existsSync(tool), `${tool} is missing: build the dsv3-tokenize target (or set DSV3_BUILD_DIR)`);
  const r = spawnSync(tool, [dataDir, ...args], { input: input ?? '', maxBuffer: 64 << 20 });
  assert.equal(r.status, 0, `dsv3-tokenize ${args.join(' ')} failed: ${r.stderr}`);
  return r.stdout;
}

const ours = {
  // One process per input: stdin text in, the plain output format out.
  encode: (text, bos) => {
    const out = run(bos ? ['--encode'] : ['--encode', '--no-bos'], Buffer.from(text, 'utf8')).toString('utf8').trim();
    return out === '' ? [] : out.split(' ').map(Number);
  },
  decode: (ids, skip) => run(skip ? ['--decode', '--skip-special'] : ['--decode'], ids.join(' ')).toString('utf8'),
  // Many inputs in one process (--jsonl).
  encodeAll: (texts, bos) => jsonLines(['--encode', ...(bos ? [] : ['--no-bos'])], texts),
  decodeAll: (idLists, skip) => jsonLines(['--decode', ...(skip ? ['--skip-special'] : [])], idLists),
};

function jsonLines(args, inputs) {
  const out = run([...args, '--jsonl'], inputs.map((x) => JSON.stringify(x) + '\n').join(''));
  const lines = out.toString('utf8').split('\n').filter((l) => l !== '');
  assert.equal(lines.length, inputs.length);
  return lines.map((l) => JSON.parse(l));
}

async function assertDecodesAsHF(idLists) {
  for (const skip of [false, true]) {
    const got = ours.decodeAll(idLists, skip);
    for (let i = 0; i < idLists.length; ++i)
      assert.equal(got[i], await hf.decode(idLists[i], skip), `decode([${idLists[i]}], skip=${skip})`);
  }
}

// The corpus: the whole file, every paragraph (blank-line separated; \r\n, tabs and
// whitespace runs kept) and every line.
const corpus = fs.readFileSync(path.join(dataDir, 'reference-corpus.txt'), 'utf8');
const samples = [...new Set([corpus, ...corpus.split('\n\n'), ...corpus.split('\n'), ''])];

test('the reference corpus covers what it must', () => {
  for (const needle of ['1234567', '\r\n', '\t\t', '    ', '\u200d', '\u0301', '<｜User｜>', '<｜begin▁of▁sentence｜>', '```', '\u{1FAE8}', '\u180E'])
    assert.ok(corpus.includes(needle), `reference-corpus.txt lacks ${JSON.stringify(needle)}`);
  assert.ok(samples.length > 50);
});

test('encode: the same ids as HF tokenizers, with and without bos', async () => {
  let tokens = 0;
  for (const bos of [false, true]) {
    const got = ours.encodeAll(samples, bos);
    for (let i = 0; i < samples.length; ++i) {
      const expected = (await hf.encode(samples[i], null, { addSpecialTokens: bos })).getIds();
      assert.deepEqual(got[i], expected, `encode(${JSON.stringify(samples[i])}, bos=${bos})`);
      tokens += expected.length;
    }
  }
  assert.ok(tokens > 1000, 'the corpus should give a fair number of tokens');
  // The plain stdin path too, on inputs where bytes matter (CRLF, tabs, no trailing newline, nothing).
  for (const text of [corpus, samples.find((s) => s.includes('\r\n')), samples.find((s) => s.includes('\t\t')), 'x', ''])
    for (const bos of [false, true])
      assert.deepEqual(ours.encode(text, bos), (await hf.encode(text, null, { addSpecialTokens: bos })).getIds());
});

test('decode: the same text as HF tokenizers', async () => {
  const idLists = [];
  for (const text of samples) idLists.push((await hf.encode(text, null, { addSpecialTokens: true })).getIds());
  await assertDecodesAsHF(idLists);
  for (const ids of [idLists[0], [], [0, 1]])
    for (const skip of [false, true]) assert.equal(ours.decode(ids, skip), await hf.decode(ids, skip));
});

test('decode: random id sequences (invalid UTF-8, special tokens) as HF does', async () => {
  // A fixed-seed LCG so that a failure reproduces.
  let state = 12345;
  const next = () => ((state = (state * 1103515245 + 12345) % 2147483648), state);
  const size = hf.getVocabSize(true);
  // Half the ids are single-byte tokens, so that characters are often cut short, at the end
  // of a sequence too.
  const byteTokens = [];
  for (let id = 0; id < size; ++id) if ([...(hf.idToToken(id) ?? '')].length === 1) byteTokens.push(id);
  assert.equal(byteTokens.length, 256);
  const idLists = [];
  for (let trial = 0; trial < 2000; ++trial)
    idLists.push(Array.from({ length: 1 + (next() % 12) }, () =>
      next() % 2 ? byteTokens[next() % 256] : next() % size));
  await assertDecodesAsHF(idLists);
});

test('decode: characters cut short or malformed, anywhere in the sequence, as HF does', async () => {
  // GPT-2's byte -> character map (the byte-level alphabet), to name single-byte tokens.
  const printable = [];
  for (let b = 0; b < 256; ++b)
    if ((b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff)) printable.push(b);
  const byteChar = new Map(printable.map((b) => [b, String.fromCodePoint(b)]));
  let extra = 0;
  for (let b = 0; b < 256; ++b) if (!byteChar.has(b)) byteChar.set(b, String.fromCodePoint(256 + extra++));
  const byteId = (b) => hf.tokenToId(byteChar.get(b));
  const sequences = [
    [0xc3], [0xe4], [0xe4, 0xb8], [0xf0], [0xf0, 0x9f], [0xf0, 0x9f, 0x98], // prefixes of é 中 😀
    [0xe0, 0x80], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0xc0, 0xaf], [0xf5], [0x80], [0xbf, 0xbf],
    [0xe4, 0xb8, 0xe4, 0xb8, 0xad], [0xf0, 0x9f, 0x98, 0x80],
  ];
  const a = byteId(0x41);
  const idLists = [];
  for (const bytes of sequences) {
    const ids = bytes.map(byteId);
    idLists.push(ids, [...ids, a], [a, ...ids, 0, ...ids], [...ids, 1]);
  }
  await assertDecodesAsHF(idLists);
});

test('pre-tokenizer: the same pieces as HF for DeepSeek-V3\'s and other models\' Split regexes', () => {
  // PCRE2 stands in for HF's regex engine: Unicode classes (with UnicodeDelta.inc), lookahead, inline
  // flags, anchors (^ and $ are line anchors there) and literal String patterns must cut alike.
  const shipped = JSON.parse(fs.readFileSync(path.join(dataDir, 'tokenizer.json'), 'utf8'));
  const gpt4 = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*" +
    '|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+';
  const o200k = "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?" +
    "|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?" +
    '|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+';
  const split = (pattern) => ({ type: 'Split', pattern, behavior: 'Isolated', invert: false });
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false };
  const variants = {
    'deepseek-v3': shipped.pre_tokenizer,
    'llama3/gpt4': { type: 'Sequence', pretokenizers: [split({ Regex: gpt4 }), byteLevel] },
    'o200k': { type: 'Sequence', pretokenizers: [split({ Regex: o200k }), byteLevel] },
    'anchors and dot': { type: 'Sequence', pretokenizers: [split({ Regex: '^\\s+|\\s+$|^.|.$|\\A\\S+|\\S+\\z' }), byteLevel] },
    'literal string': { type: 'Sequence', pretokenizers: [split({ String: '. ' }), split({ String: '\\s' }), byteLevel] },
    'negated classes': { type: 'Sequence', pretokenizers: [split({ Regex: '\\P{L}+|[^\\p{S}\\s]{2}|\\S{3}' }), byteLevel] },
  };
  const training = fs.readFileSync(path.join(dataDir, 'corpus.txt'), 'utf8');
  const cut = (piece) => (piece.length > 40 ? piece.slice(0, 40) + '...' : piece);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dsv3-pretok-'));
  try {
    for (const [name, pre] of Object.entries(variants)) {
      fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify({ ...shipped, pre_tokenizer: pre }));
      const ref = Tokenizer.fromFile(path.join(dir, 'tokenizer.json')).getPreTokenizer();
      for (const text of [corpus, training]) {
        const expected = ref.preTokenizeString(text).map(([piece]) => piece);
        const r = spawnSync(tool, [dir, '--pre-tokenize'], { input: Buffer.from(text, 'utf8'), maxBuffer: 64 << 20 });
        assert.equal(r.status, 0, `${name}: ${r.stderr}`);
        const got = JSON.parse(r.stdout.toString('utf8'));
        const at = got.findIndex((piece, i) => piece !== expected[i]);
        assert.ok(at < 0 && got.length === expected.length,
          `${name}: piece ${at} differs: ours ${JSON.stringify(got.slice(at, at + 3).map(cut))}, ` +
          `HF ${JSON.stringify(expected.slice(at, at + 3).map(cut))}`);
      }
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('added tokens written in the byte-level alphabet: encoded and decoded as HF does', async () => {
  // HF runs added tokens through the ByteLevel decoder too: "Ġzz" decodes to " zz", while "<｜User｜>"
  // (not all in the alphabet) stays itself. Also a special one, and one overlapping a vocab token.
  const shipped = JSON.parse(fs.readFileSync(path.join(dataDir, 'tokenizer.json'), 'utf8'));
  const size = hf.getVocabSize(true);
  const extra = [
    { content: 'Ġzz', special: false, normalized: false },
    { content: 'Ñģpecial', special: true, normalized: false },
    { content: 'ĠĠtab', special: false, normalized: true },
  ].map((t, i) => ({ id: size + i, single_word: false, lstrip: false, rstrip: false, ...t }));
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dsv3-added-'));
  try {
    fs.writeFileSync(path.join(dir, 'tokenizer.json'),
      JSON.stringify({ ...shipped, added_tokens: [...shipped.added_tokens, ...extra] }));
    const ref = Tokenizer.fromFile(path.join(dir, 'tokenizer.json'));
    const text = 'aĠzzb Ñģpecial ĠĠtab<｜User｜>Ġzz\n  tab';
    const expected = (await ref.encode(text, null, { addSpecialTokens: false })).getIds();
    const r = spawnSync(tool, [dir, '--encode', '--no-bos'], { input: Buffer.from(text, 'utf8') });
    assert.deepEqual(r.stdout.toString().trim().split(' ').map(Number), expected);
    for (const ids of [expected, [size, size + 1, size + 2], [75, size + 1, 75], [size + 2, 1, 0]]) {
      for (const skip of [false, true]) {
        const got = spawnSync(tool, [dir, '--decode', ...(skip ? ['--skip-special'] : [])], { input: ids.join(' ') });
        assert.equal(got.stdout.toString('utf8'), await ref.decode(ids, skip), `decode([${ids}], skip=${skip})`);
      }
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('chat: dsv3-tokenize --chat equals @huggingface/jinja rendering the real template', async () => {
  assert.ok(config.chat_template.includes("'<｜User｜>' + message['content']"), 'not DeepSeek-V3\'s template');
  const template = new Template(config.chat_template);
  const conversations = [
    { messages: [{ role: 'user', content: 'Hello!' }], add_generation_prompt: true },
    { messages: [{ role: 'user', content: 'Hello!' }], add_generation_prompt: false },
    {
      messages: [
        { role: 'system', content: 'You are a helpful assistant.' },
        { role: 'user', content: 'What is 2+2?' },
      ],
      add_generation_prompt: true,
    },
    {
      messages: [
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: 'Name a prime.' },
        { role: 'assistant', content: '7' },
        { role: 'user', content: '再来一个？ 😀\n\tplease' },
        { role: 'assistant', content: '11' },
      ],
      add_generation_prompt: false,
    },
    {
      messages: [
        { role: 'system', content: 'First rule.' },
        { role: 'user', content: 'a' },
        { role: 'system', content: 'Second rule, given late.' },
        { role: 'assistant', content: 'b' },
        { role: 'system', content: '' },
        { role: 'user', content: 'c' },
      ],
      add_generation_prompt: true,
    },
    {
      messages: [
        { role: 'user', content: '' },
        { role: 'assistant', content: '' },
        { role: 'user', content: 'text with <｜User｜> and <｜end▁of▁sentence｜> inside, {{ not jinja }} {% raw %}' },
      ],
      add_generation_prompt: true,
    },
    { messages: [{ role: 'assistant', content: 'An assistant opening.' }], add_generation_prompt: false },
  ];
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dsv3-chat-'));
  try {
    conversations.forEach((conv, i) => {
      const expected = template.render({
        messages: conv.messages,
        add_generation_prompt: conv.add_generation_prompt,
        bos_token: tokenText(config.bos_token),
        eos_token: tokenText(config.eos_token),
      });
      const file = path.join(dir, `chat-${i}.json`);
      fs.writeFileSync(file, JSON.stringify(conv));
      assert.equal(run(['--chat', file]).toString('utf8'), expected, `conversation ${i}`);
      conv.expected = expected;
      conv.file = file;
    });
    // And the prompt's ids are HF's ids of the Jinja rendering (no second bos).
    for (const conv of conversations) {
      const expected = (await hf.encode(conv.expected, null, { addSpecialTokens: false })).getIds();
      const got = run(['--chat', conv.file, '--ids']).toString('utf8').trim().split(' ').map(Number);
      assert.deepEqual(got, expected);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('dsv3-tokenize reports a malformed tokenizer in one line', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dsv3-badtok-'));
  try {
    fs.writeFileSync(path.join(dir, 'tokenizer.json'), '{"model": ');
    const r = spawnSync(tool, [dir, '--encode'], { input: 'x' });
    assert.equal(r.status, 1);
    assert.equal(r.stdout.length, 0);
    const err = r.stderr.toString();
    assert.match(err, /^dsv3-tokenize: error: .*tokenizer\.json: invalid JSON: .*\n$/);

    // Added-token ids HF would renumber are refused, naming the id HF gives: check that it does.
    const shipped = JSON.parse(fs.readFileSync(path.join(dataDir, 'tokenizer.json'), 'utf8'));
    const size = hf.getVocabSize(true);
    const gap = { id: size + 5, content: '<gap>', single_word: false, lstrip: false, rstrip: false,
      normalized: false, special: true };
    fs.writeFileSync(path.join(dir, 'tokenizer.json'),
      JSON.stringify({ ...shipped, added_tokens: [...shipped.added_tokens, gap] }));
    const bad = spawnSync(tool, [dir, '--encode'], { input: 'x' });
    assert.equal(bad.status, 1);
    const m = bad.stderr.toString().match(/id (\d+) is not the id HF gives it \((\d+):/);
    assert.ok(m, bad.stderr.toString());
    assert.equal(Number(m[1]), size + 5);
    assert.equal(Number(m[2]), Tokenizer.fromFile(path.join(dir, 'tokenizer.json')).tokenToId('<gap>'));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
