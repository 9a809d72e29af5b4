// Shared by the dsv3-serve tests (serve.test.mjs, serve-robustness.test.mjs):
//   - fixture(): a random DeepSeek-V3-architecture checkpoint whose vocabulary is the test
//     tokenizer's (test/data/tokenizer, copied in), compiled with dsv3-compile for 4 batch rows
//     and 1024 cache positions. Built once per build directory and reused while dsv3-compile
//     and the recipe are unchanged; concurrent builders write to their own temp dirs and the
//     first rename wins, so parallel test runs never see half a fixture.
//   - startServer(): dsv3-serve on a free port of 127.0.0.1 (--port 0; the port is read back
//     from its "serving ... on http://..." line).
//   - dsv3Run(): what dsv3-run generates for one prompt alone (the reference for every reply).
// Binaries come from $DSV3_BUILD_DIR/bin (default /work/main/build); $DSV3_COMPILE names another
// dsv3-compile (a runtime-only sanitizer build has none).

import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
export const root = path.resolve(here, '..', '..');
export const buildDir = process.env.DSV3_BUILD_DIR || '/work/main/build';
export const tokenizerDir = path.join(root, 'test', 'data', 'tokenizer');
export const bin = (name) => path.join(buildDir, 'bin', name);

export const MAX_BATCH = 4;
export const MAX_SEQ_LEN = 1024;

function check(result, what) {
  if (result.status !== 0)
    throw new Error(`${what} failed (exit ${result.status}): ${result.stderr}`);
  return result.stdout.toString();
}

/// The model's config: the golden tiny-v3 shape with the tokenizer's vocabulary and ids.
function fixtureConfig() {
  const config = JSON.parse(fs.readFileSync(path.join(root, 'test', 'data', 'golden', 'tiny-v3', 'config.json'), 'utf8'));
  const tok = JSON.parse(fs.readFileSync(path.join(tokenizerDir, 'tokenizer.json'), 'utf8'));
  const tokConfig = JSON.parse(fs.readFileSync(path.join(tokenizerDir, 'tokenizer_config.json'), 'utf8'));
  const ids = new Map(Object.entries(tok.model.vocab));
  for (const t of tok.added_tokens) ids.set(t.content, t.id);
  const idOf = (t) => {
    const content = typeof t === 'string' ? t : t.content;
    if (!ids.has(content)) throw new Error(`tokenizer.json lacks ${content}`);
    return ids.get(content);
  };
  config.vocab_size = Math.max(...ids.values()) + 1;
  config.bos_token_id = idOf(tokConfig.bos_token);
  config.eos_token_id = idOf(tokConfig.eos_token);
  return config;
}

/// { ckpt, artifact, config } of the shared test model, built if needed.
export function fixture() {
  const compile = process.env.DSV3_COMPILE || bin('dsv3-compile');
  if (!fs.existsSync(compile)) throw new Error(`${compile} is missing: build dsv3-compile (or set DSV3_BUILD_DIR or DSV3_COMPILE)`);
  const config = fixtureConfig();
  const st = fs.statSync(compile);
  const tokStat = fs.statSync(path.join(tokenizerDir, 'tokenizer.json'));
  const stamp = JSON.stringify({ compiler: [st.size, st.mtimeMs], tokenizer: [tokStat.size, tokStat.mtimeMs],
                                 config, MAX_BATCH, MAX_SEQ_LEN });
  const dir = process.env.DSV3_SERVE_FIXTURE_DIR || path.join(buildDir, 'test', 'Serve', 'fixture');
  const result = { ckpt: path.join(dir, 'ckpt'), artifact: path.join(dir, 'artifact'), config };
  const stampFile = path.join(dir, 'stamp.json');
  if (fs.existsSync(stampFile) && fs.readFileSync(stampFile, 'utf8') === stamp) return result;

  fs.mkdirSync(path.dirname(dir), { recursive: true });
  const tmp = `${dir}.tmp-${process.pid}`;
  fs.rmSync(tmp, { recursive: true, force: true });
  fs.mkdirSync(tmp);
  const cfgPath = path.join(tmp, 'config.json');
  fs.writeFileSync(cfgPath, JSON.stringify(config, null, 1));
  check(spawnSync('/usr/bin/python3', ['-m', 'dsv3.generate_model', '--config', cfgPath, '--out', path.join(tmp, 'ckpt'),
                                       '--seed', '7'],
                  { env: { ...process.env, PYTHONPATH: path.join(root, 'python') } }), 'generate_model');
  for (const f of ['tokenizer.json', 'tokenizer_config.json'])
    fs.copyFileSync(path.join(tokenizerDir, f), path.join(tmp, 'ckpt', f));
  check(spawnSync(compile, [path.join(tmp, 'ckpt'), '-o', path.join(tmp, 'artifact'), '--max-batch', String(MAX_BATCH),
                            '--max-seq-len', String(MAX_SEQ_LEN)]), 'dsv3-compile');
  fs.writeFileSync(path.join(tmp, 'stamp.json'), stamp);
  fs.rmSync(dir, { recursive: true, force: true });
  try {
    fs.renameSync(tmp, dir);
  } catch (e) {
    // Another test process finished first: use its fixture.
    fs.rmSync(tmp, { recursive: true, force: true });
    if (!fs.existsSync(stampFile)) throw e;
  }
  return result;
}

/// Starts dsv3-serve; resolves to { url, port, proc, output(), stop() }.
export function startServer(fix, args = []) {
  const proc = spawn(bin('dsv3-serve'), [fix.artifact, '--weights', fix.ckpt, '--port', '0', ...args],
                     { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  proc.stderr.on('data', (d) => { err += d; });
  const exited = new Promise((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { proc.kill('SIGKILL'); reject(new Error(`dsv3-serve did not start: ${err}`)); }, 60000);
    proc.stdout.on('data', (d) => {
      out += d;
      const m = /on (http:\/\/[^ ]+:(\d+))/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve({
          url: m[1], port: Number(m[2]), proc, pid: proc.pid,
          output: () => ({ out, err }),
          // SIGTERM, then the exit status (a clean stop is code 0).
          stop: async (signal = 'SIGTERM') => { proc.kill(signal); return exited; },
          exited,
        });
      }
    });
    exited.then(({ code }) => { clearTimeout(timer); reject(new Error(`dsv3-serve exited (${code}): ${err}`)); });
  });
}

/// Generated token ids of dsv3-run for `ids` alone (greedy unless `sampling` says otherwise).
export function dsv3Run(fix, ids, maxNewTokens, sampling = {}) {
  const args = [fix.artifact, '--weights', fix.ckpt, '--tokens', ids.join(','), '--max-new-tokens', String(maxNewTokens)];
  if (sampling.temperature !== undefined) args.push('--temperature', String(sampling.temperature));
  if (sampling.top_p !== undefined) args.push('--top-p', String(sampling.top_p));
  if (sampling.seed !== undefined) args.push('--seed', String(sampling.seed));
  if (sampling.ignore_eos) args.push('--ignore-eos');
  const out = check(spawnSync(bin('dsv3-run'), args), 'dsv3-run');
  const m = /^sequence 0:(.*)$/m.exec(out);
  if (!m) throw new Error(`unexpected dsv3-run output: ${out}`);
  return m[1].trim() === '' ? [] : m[1].trim().split(',').map(Number);
}

/// Resident memory of a process in kB (VmRSS of /proc/PID/status).
export function rssKb(pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m[1]);
}

export async function health(url) {
  const r = await fetch(`${url}/health`);
  if (r.status !== 200) throw new Error(`/health: ${r.status}`);
  return r.json();
}

/// Polls /health until `pred(h)` holds (or throws after `ms`).
export async function waitHealth(url, pred, ms = 20000) {
  const end = Date.now() + ms;
  for (;;) {
    const h = await health(url);
    if (pred(h)) return h;
    if (Date.now() > end) throw new Error(`timed out waiting on /health: ${JSON.stringify(h)}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/// Reads a fetch Response's server-sent events: the parsed `data:` objects, and whether [DONE] came.
export async function readEvents(response) {
  const text = await response.text();
  const events = [];
  let done = false;
  for (const block of text.split('\n\n')) {
    if (!block.startsWith('data: ')) continue;
    const data = block.slice(6);
    if (data === '[DONE]') done = true;
    else events.push(JSON.parse(data));
  }
  return { events, done };
}
