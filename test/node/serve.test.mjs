// dsv3-serve driven by the official `openai` npm client (and plain fetch where the client
// would hide what is checked). Every reply is checked against independent references:
//   - the prompt's ids: HF `tokenizers` on the same tokenizer.json (chat: @huggingface/jinja
//     rendering the template first);
//   - the generated ids: what dsv3-run gives for that prompt alone (greedy, or the same seed),
//     read from the reply's `token_ids` extension (`return_token_ids: true`);
//   - the text: HF `tokenizers` decoding those ids (special tokens skipped).
// Covers non-streaming and streaming completions and chat completions, six concurrent
// requests on a 4-row artifact (some queue; decode steps are shared), seeded sampling, stop
// strings (never a partial stop string on the stream), usage, 503 past the queue bound,
// startup errors and a clean SIGTERM.
// Run: DSV3_BUILD_DIR=build node --test test/node/serve.test.mjs   (ctest: node-serve)

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import OpenAI from 'openai';
import { fixture, startServer, dsv3Run, health, waitHealth, bin, tokenizerDir, MAX_BATCH, MAX_SEQ_LEN }
  from './serve-helpers.mjs';

const require = createRequire(import.meta.url);
const { Tokenizer } = require('tokenizers');
const { Template } = require('@huggingface/jinja');

const hf = Tokenizer.fromFile(path.join(tokenizerDir, 'tokenizer.json'));
const tokConfig = JSON.parse(fs.readFileSync(path.join(tokenizerDir, 'tokenizer_config.json'), 'utf8'));
const encode = async (text, bos) => (await hf.encode(text, null, { addSpecialTokens: bos })).getIds();
const decode = (ids) => hf.decode(ids, true);

let fix;
let server;
let client;

before(async () => {
  fix = fixture();
  server = await startServer(fix, ['--threads', '2']);
  client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'none', maxRetries: 0 });
});

after(async () => {
  if (server) await server.stop();
});

async function chatPromptIds(messages) {
  const template = new Template(tokConfig.chat_template);
  const text = template.render({
    messages, add_generation_prompt: true,
    bos_token: tokConfig.bos_token.content ?? tokConfig.bos_token,
    eos_token: tokConfig.eos_token.content ?? tokConfig.eos_token,
  });
  return encode(text, false);
}

/// The reply (ids, text, finish reason, usage) checked against dsv3-run and HF.
async function checkAgainstReference(promptIds, maxTokens, reply, sampling = {}) {
  const expected = dsv3Run(fix, promptIds, maxTokens, sampling);
  assert.deepEqual(reply.tokenIds, expected, 'generated ids differ from dsv3-run alone');
  assert.equal(reply.text, await decode(expected));
  const eos = fix.config.eos_token_id;
  const endedAtEos = expected.length > 0 && expected[expected.length - 1] === eos && !sampling.ignore_eos;
  assert.equal(reply.finishReason, endedAtEos ? 'stop' : 'length');
  if (reply.usage)
    assert.deepEqual(reply.usage, { prompt_tokens: promptIds.length, completion_tokens: expected.length,
                                    total_tokens: promptIds.length + expected.length });
}

async function complete(params) {
  const r = await client.completions.create({ ...params, return_token_ids: true });
  assert.equal(r.object, 'text_completion');
  assert.equal(r.choices.length, 1);
  const c = r.choices[0];
  return { promptIds: c.prompt_token_ids, tokenIds: c.token_ids, text: c.text, finishReason: c.finish_reason,
           usage: r.usage };
}

async function completeStream(params) {
  const stream = await client.completions.create({ ...params, stream: true, return_token_ids: true,
                                                   stream_options: { include_usage: true } });
  const reply = { promptIds: null, tokenIds: [], text: '', finishReason: null, usage: null, chunks: [] };
  for await (const chunk of stream) {
    assert.equal(chunk.object, 'text_completion');
    if (chunk.usage) reply.usage = chunk.usage;
    for (const c of chunk.choices) {
      if (c.prompt_token_ids) reply.promptIds = c.prompt_token_ids;
      reply.tokenIds.push(...(c.token_ids ?? []));
      reply.text += c.text;
      reply.chunks.push(c.text);
      if (c.finish_reason) reply.finishReason = c.finish_reason;
    }
  }
  return reply;
}

async function chat(params) {
  const r = await client.chat.completions.create({ ...params, return_token_ids: true });
  assert.equal(r.object, 'chat.completion');
  const c = r.choices[0];
  assert.equal(c.message.role, 'assistant');
  return { promptIds: c.prompt_token_ids, tokenIds: c.token_ids, text: c.message.content,
           finishReason: c.finish_reason, usage: r.usage };
}

async function chatStream(params) {
  const stream = await client.chat.completions.create({ ...params, stream: true, return_token_ids: true,
                                                        stream_options: { include_usage: true } });
  const reply = { promptIds: null, tokenIds: [], text: '', finishReason: null, usage: null, role: null };
  for await (const chunk of stream) {
    assert.equal(chunk.object, 'chat.completion.chunk');
    if (chunk.usage) reply.usage = chunk.usage;
    for (const c of chunk.choices) {
      if (c.prompt_token_ids) reply.promptIds = c.prompt_token_ids;
      if (c.delta.role) reply.role = c.delta.role;
      reply.tokenIds.push(...(c.token_ids ?? []));
      reply.text += c.delta.content ?? '';
      if (c.finish_reason) reply.finishReason = c.finish_reason;
    }
  }
  assert.equal(reply.role, 'assistant');
  return reply;
}

test('health and models', async () => {
  const h = await health(server.url);
  assert.equal(h.status, 'ok');
  assert.equal(h.max_batch, MAX_BATCH);
  assert.equal(h.max_seq_len, MAX_SEQ_LEN);
  const models = [];
  for await (const m of client.models.list()) models.push(m);
  assert.equal(models.length, 1);
  assert.equal(models[0].id, 'ckpt');
  assert.equal((await client.models.retrieve('ckpt')).id, 'ckpt');
});

test('completion: text prompt, not streamed and streamed', async () => {
  const prompt = 'The quick brown fox';
  const promptIds = await encode(prompt, true);
  const whole = await complete({ model: 'ckpt', prompt, max_tokens: 12, temperature: 0 });
  assert.deepEqual(whole.promptIds, promptIds);
  await checkAgainstReference(promptIds, 12, whole);
  const streamed = await completeStream({ model: 'ckpt', prompt, max_tokens: 12, temperature: 0 });
  assert.deepEqual(streamed.promptIds, promptIds);
  await checkAgainstReference(promptIds, 12, streamed);
  assert.ok(streamed.chunks.length > 1, 'the text came in one piece');
});

test('completion: a prompt of token ids', async () => {
  const promptIds = [0, 17, 300, 42, 999, 5];
  const reply = await complete({ model: 'ckpt', prompt: promptIds, max_tokens: 9, temperature: 0 });
  assert.deepEqual(reply.promptIds, promptIds);
  await checkAgainstReference(promptIds, 9, reply);
});

test('chat completion: not streamed and streamed', async () => {
  const messages = [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'What is 2+2? 😀' }];
  const promptIds = await chatPromptIds(messages);
  const whole = await chat({ model: 'ckpt', messages, max_tokens: 10, temperature: 0 });
  assert.deepEqual(whole.promptIds, promptIds);
  await checkAgainstReference(promptIds, 10, whole);
  const streamed = await chatStream({ model: 'ckpt', messages, max_completion_tokens: 10, temperature: 0 });
  assert.deepEqual(streamed.promptIds, promptIds);
  await checkAgainstReference(promptIds, 10, streamed);
});

test('seeded sampling equals dsv3-run with the same seed', async () => {
  const prompt = 'Once upon a time';
  const promptIds = await encode(prompt, true);
  const sampling = { temperature: 0.9, top_p: 0.95, seed: 1234 };
  const reply = await complete({ model: 'ckpt', prompt, max_tokens: 16, ...sampling });
  await checkAgainstReference(promptIds, 16, reply, sampling);
  const again = await completeStream({ model: 'ckpt', prompt, max_tokens: 16, ...sampling });
  assert.deepEqual(again.tokenIds, reply.tokenIds);
});

test('six concurrent requests on four rows: each as alone, decode steps shared', async () => {
  const before = await health(server.url);
  const jobs = [
    { prompt: 'alpha beta', max_tokens: 150, stream: false },
    { prompt: 'gamma', max_tokens: 90, stream: true },
    { prompt: 'delta epsilon zeta eta theta', max_tokens: 120, stream: false },
    { prompt: 'A much longer prompt that keeps the prefill busy for a little while, with digits 12345', max_tokens: 60, stream: true },
    { prompt: 'x', max_tokens: 140, stream: false },
    { prompt: 'Hello, world!', max_tokens: 100, stream: true },
  ];
  const replies = await Promise.all(jobs.map((j) => {
    const params = { model: 'ckpt', prompt: j.prompt, max_tokens: j.max_tokens, temperature: 0, ignore_eos: true };
    return j.stream ? completeStream(params) : complete(params);
  }));
  let generated = 0;
  for (const [i, j] of jobs.entries()) {
    const promptIds = await encode(j.prompt, true);
    assert.deepEqual(replies[i].promptIds, promptIds);
    await checkAgainstReference(promptIds, j.max_tokens, replies[i], { ignore_eos: true });
    generated += replies[i].tokenIds.length;
  }
  const afterwards = await waitHealth(server.url, (h) => h.active === 0 && h.queued === 0 && h.in_flight === 0);
  assert.equal(afterwards.generated_tokens - before.generated_tokens, generated);
  // Alone, each request needs (its tokens - 1) decode calls; batched, they share them.
  const decodeCalls = afterwards.decode_calls - before.decode_calls;
  console.log(`six concurrent requests: ${generated} tokens in ${decodeCalls} decode calls`);
  assert.ok(decodeCalls < 0.75 * (generated - jobs.length),
            `decode steps were not shared: ${decodeCalls} calls for ${generated} tokens`);
});

test('stop strings: the text is cut before the first one, never streamed in part', async () => {
  const prompt = 'The rain in Spain';
  const promptIds = await encode(prompt, true);
  const full = await complete({ model: 'ckpt', prompt, max_tokens: 40, temperature: 0, ignore_eos: true });
  // A stop string from the middle of the reply (without replacement characters, whose bytes
  // a stream may resolve later than the whole text).
  const chars = [...full.text];
  let stop = null;
  for (let k = Math.floor(chars.length / 2); k < chars.length - 2 && !stop; ++k) {
    const s = chars.slice(k, k + 3).join('');
    if (!s.includes('\ufffd') && s.trim() === s && s.length > 0) stop = s;
  }
  assert.ok(stop, `no stop string found in ${JSON.stringify(full.text)}`);
  const cut = full.text.slice(0, full.text.indexOf(stop));
  for (const streamed of [false, true]) {
    const params = { model: 'ckpt', prompt, max_tokens: 40, temperature: 0, ignore_eos: true, stop: ['never-there', stop] };
    const reply = streamed ? await completeStream(params) : await complete(params);
    assert.equal(reply.text, cut, `streamed: ${streamed}`);
    assert.equal(reply.finishReason, 'stop');
    // Generation ended at the token that completed the stop string.
    assert.ok(reply.tokenIds.length < full.tokenIds.length);
    assert.deepEqual(reply.tokenIds, full.tokenIds.slice(0, reply.tokenIds.length));
    assert.ok((await decode(reply.tokenIds)).includes(stop));
    assert.ok(!(await decode(reply.tokenIds.slice(0, -1))).includes(stop));
    assert.equal(reply.usage.completion_tokens, reply.tokenIds.length);
  }
  const none = await complete({ model: 'ckpt', prompt, max_tokens: 40, temperature: 0, ignore_eos: true, stop: 'never-there' });
  assert.equal(none.text, full.text);
  assert.equal(none.finishReason, 'length');
});

test('errors reach the client as OpenAI errors', async () => {
  await assert.rejects(client.completions.create({ model: 'ckpt', prompt: 'x', max_tokens: 0 }),
                       (e) => e.status === 400 && e.param === 'max_tokens' && /at least 1/.test(e.message));
  await assert.rejects(client.completions.create({ model: 'ckpt', prompt: 'x', max_tokens: MAX_SEQ_LEN }),
                       (e) => e.status === 400 && e.code === 'context_length_exceeded');
  await assert.rejects(client.completions.create({ model: 'ckpt', prompt: 'x', n: 2 }),
                       (e) => e.status === 400 && e.param === 'n');
  await assert.rejects(client.completions.create({ model: 'ckpt', prompt: 'x', bogus_field: 1 }),
                       (e) => e.status === 400 && e.param === 'bogus_field' && e.code === 'unknown_field');
  await assert.rejects(client.chat.completions.create({ model: 'other', messages: [{ role: 'user', content: 'x' }] }),
                       (e) => e.status === 404 && e.code === 'model_not_found');
});

test('503 past the queue bound', async () => {
  const small = await startServer(fix, ['--max-queue', '1', '--threads', '1']);
  try {
    const c = new OpenAI({ baseURL: `${small.url}/v1`, apiKey: 'none', maxRetries: 0 });
    const long = { model: 'ckpt', prompt: 'fill', max_tokens: MAX_SEQ_LEN - 8, temperature: 0, ignore_eos: true };
    const controllers = [];
    const running = [];
    for (let i = 0; i < MAX_BATCH + 1; ++i) {
      const ac = new AbortController();
      controllers.push(ac);
      running.push(fetch(`${small.url}/v1/completions`, { method: 'POST', body: JSON.stringify({ ...long, stream: true }),
                                                          signal: ac.signal })
        .then((r) => r.text()).catch(() => 'aborted'));
    }
    await waitHealth(small.url, (h) => h.active === MAX_BATCH && h.queued === 1);
    await assert.rejects(c.completions.create({ model: 'ckpt', prompt: 'one too many', max_tokens: 4 }),
                         (e) => e.status === 503 && e.code === 'queue_full' && e.type === 'server_error');
    // Clients that leave free their rows (and the queued request starts and leaves too).
    for (const ac of controllers) ac.abort();
    await Promise.all(running);
    await waitHealth(small.url, (h) => h.active === 0 && h.queued === 0 && h.in_flight === 0);
    const ok = await c.completions.create({ model: 'ckpt', prompt: 'now there is room', max_tokens: 3, temperature: 0 });
    assert.equal(ok.choices.length, 1);
  } finally {
    const { code } = await small.stop();
    assert.equal(code, 0);
  }
});

function startFails(args) {
  const r = spawnSync(bin('dsv3-serve'), args, { timeout: 60000 });
  const err = r.stderr.toString();
  assert.equal(r.status, 1, err);
  assert.equal(r.stdout.toString(), '');
  assert.match(err, /^dsv3-serve: error: .+\n$/);
  return err;
}

test('startup errors: one line, exit 1', async () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'dsv3-serve-'));
  try {
    startFails([path.join(tmp, 'no-artifact'), '--weights', fix.ckpt, '--port', '0']);
    // A checkpoint without tokenizer.json.
    const bare = path.join(tmp, 'bare');
    fs.mkdirSync(bare);
    for (const f of fs.readdirSync(fix.ckpt))
      if (!f.startsWith('tokenizer')) fs.symlinkSync(path.join(fix.ckpt, f), path.join(bare, f));
    assert.match(startFails([fix.artifact, '--weights', bare, '--port', '0']), /tokenizer/);
    // A port that is taken.
    const blocker = net.createServer();
    await new Promise((r) => blocker.listen(0, '127.0.0.1', r));
    try {
      const port = blocker.address().port;
      assert.match(startFails([fix.artifact, '--weights', fix.ckpt, '--port', String(port)]), new RegExp(`:${port}`));
    } finally {
      blocker.close();
    }
    startFails([fix.artifact, '--weights', fix.ckpt, '--port', 'http']);
    startFails([fix.artifact, '--weights', fix.ckpt, '--bogus']);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});

test('SIGINT stops the server cleanly, also with a request in flight', async () => {
  const s = await startServer(fix, ['--threads', '1']);
  const inFlight = fetch(`${s.url}/v1/completions`, {
    method: 'POST',
    body: JSON.stringify({ prompt: 'long', max_tokens: MAX_SEQ_LEN - 8, temperature: 0, ignore_eos: true, stream: true }),
  }).then((r) => r.text()).catch((e) => String(e));
  await waitHealth(s.url, (h) => h.active === 1);
  const { code, signal } = await s.stop('SIGINT');
  assert.equal(signal, null);
  assert.equal(code, 0, s.output().err);
  assert.match(s.output().err, /stopped/);
  await inFlight;
});
