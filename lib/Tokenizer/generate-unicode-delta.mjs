// Generates UnicodeDelta.inc: for each Unicode general category a pre-tokenizer regex may use (\p{Lu},
// ...; \p{L} is the union), the code points that HF tokenizers' regex engine puts in it and this
// machine's PCRE2 does not, and HF's whole \s. PCRE2 10.42 (Debian bookworm) has Unicode 14 tables;
// HF's engine knows later versions, so without these additions characters assigned since (Unicode 15/16
// emoji such as U+1FAE8) split differently and encode to different ids. Tokenizer.cpp adds the ranges to
// the Split patterns it compiles (docs/tokenizer.md).
//
// Run again when either side changes (a new PCRE2, or the tokenizers version pinned in
// test/node/package.json), from the repository root:
//   node lib/Tokenizer/generate-unicode-delta.mjs > lib/Tokenizer/UnicodeDelta.inc
// Needs test/node's npm packages, a C compiler and libpcre2-dev. Takes a few minutes.

import { createRequire } from 'node:module';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const require = createRequire(path.join(root, 'test', 'node', 'package.json'));
const { Tokenizer } = require('tokenizers');
const hfVersion = require('tokenizers/package.json').version;

const GENERAL = ['Lu', 'Ll', 'Lt', 'Lm', 'Lo', 'Mn', 'Mc', 'Me', 'Nd', 'Nl', 'No', 'Pc', 'Pd', 'Ps', 'Pe', 'Pi',
  'Pf', 'Po', 'Sm', 'Sc', 'Sk', 'So', 'Zs', 'Zl', 'Zp'];
const CLASSES = [...GENERAL.map((c) => `\\p{${c}}`), '\\s'];
const MAX = 0x110000;
const isSurrogate = (cp) => cp >= 0xd800 && cp < 0xe000;

// Every scalar value once; index i is code point i below the surrogates and i + 0x800 above.
let all = '';
for (let cp = 0; cp < MAX; ++cp) if (!isSurrogate(cp)) all += String.fromCodePoint(cp);
const indexToCp = (i) => (i < 0xd800 ? i : i + 0x800);

function hfMembers(regex) {
  // Split with behaviour Removed leaves exactly the code points outside the class.
  const tok = Tokenizer.fromString(JSON.stringify({
    version: '1.0', added_tokens: [], normalizer: null, post_processor: null, decoder: null,
    pre_tokenizer: { type: 'Split', pattern: { Regex: regex }, behavior: 'Removed', invert: false },
    model: { type: 'BPE', vocab: {}, merges: [] },
  }));
  const member = new Uint8Array(MAX);
  for (let cp = 0; cp < MAX; ++cp) member[cp] = isSurrogate(cp) ? 0 : 1;
  for (const [, [start, end]] of tok.getPreTokenizer().preTokenizeString(all))
    for (let i = start; i < end; ++i) member[indexToCp(i)] = 0;
  return member;
}

function pcreMembers() {
  // A small C program: for each class, one byte per code point (1: PCRE2 UTF+UCP matches it).
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dsv3-unicode-'));
  const src = path.join(dir, 'members.c'), exe = path.join(dir, 'members');
  fs.writeFileSync(src, `
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdio.h>
#include <string.h>
static int utf8(unsigned cp, unsigned char *o) {
  if (cp < 0x80) { o[0] = cp; return 1; }
  if (cp < 0x800) { o[0] = 0xC0 | cp >> 6; o[1] = 0x80 | (cp & 63); return 2; }
  if (cp < 0x10000) { o[0] = 0xE0 | cp >> 12; o[1] = 0x80 | (cp >> 6 & 63); o[2] = 0x80 | (cp & 63); return 3; }
  o[0] = 0xF0 | cp >> 18; o[1] = 0x80 | (cp >> 12 & 63); o[2] = 0x80 | (cp >> 6 & 63); o[3] = 0x80 | (cp & 63);
  return 4;
}
int main(int argc, char **argv) {
  for (int a = 1; a < argc; ++a) {
    int err; PCRE2_SIZE off;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)argv[a], PCRE2_ZERO_TERMINATED,
                                   PCRE2_UTF | PCRE2_UCP | PCRE2_ANCHORED, &err, &off, NULL);
    if (!re) return 1;
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
    pcre2_match_data *md = pcre2_match_data_create(1, NULL);
    for (unsigned cp = 0; cp < 0x110000; ++cp) {
      unsigned char buf[4]; int n = utf8(cp, buf);
      int hit = cp >= 0xD800 && cp < 0xE000 ? 0
              : pcre2_match(re, buf, n, 0, PCRE2_NO_UTF_CHECK, md, NULL) > 0;
      putchar(hit);
    }
    pcre2_match_data_free(md); pcre2_code_free(re);
  }
  return 0;
}
`);
  execFileSync('cc', ['-O2', src, '-o', exe, '-lpcre2-8']);
  const versionSrc = path.join(dir, 'version.c');
  fs.writeFileSync(versionSrc, '#define PCRE2_CODE_UNIT_WIDTH 8\n#include <pcre2.h>\n#include <stdio.h>\n' +
    'int main(void) { char v[64]; pcre2_config(PCRE2_CONFIG_UNICODE_VERSION, v); printf("%s", v); return 0; }\n');
  execFileSync('cc', [versionSrc, '-o', exe + '-version', '-lpcre2-8']);
  const unicode = execFileSync(exe + '-version').toString();
  const out = execFileSync(exe, CLASSES, { maxBuffer: MAX * CLASSES.length + 1024 });
  fs.rmSync(dir, { recursive: true, force: true });
  return { unicode, members: CLASSES.map((_, k) => out.subarray(k * MAX, (k + 1) * MAX)) };
}

function ranges(set) {
  const out = [];
  for (let cp = 0; cp < MAX; ++cp) {
    if (!set(cp)) continue;
    let end = cp;
    while (end + 1 < MAX && set(end + 1)) ++end;
    out.push([cp, end]);
    cp = end;
  }
  return out;
}

const hex = (cp) => cp.toString(16).toUpperCase();
const pcre = pcreMembers();
const lines = [];
const removals = [];
CLASSES.forEach((cls, k) => {
  const hf = hfMembers(cls);
  const mine = pcre.members[k];
  // \s is small and differs both ways (PCRE2 counts U+180E, HF does not): it is written out whole and
  // replaces PCRE2's; the \p{..} classes only get additions.
  const whole = cls === '\\s';
  const extra = ranges((cp) => hf[cp] && (whole || !mine[cp]));
  const missing = whole ? [] : ranges((cp) => !hf[cp] && mine[cp]);
  if (missing.length) removals.push(`${cls}: ${missing.map(([a, b]) => `${hex(a)}-${hex(b)}`).join(' ')}`);
  if (!extra.length) return;
  const body = extra.map(([a, b]) => (a === b ? `\\\\x{${hex(a)}}` : `\\\\x{${hex(a)}}-\\\\x{${hex(b)}}`)).join('');
  const name = cls === '\\s' ? 's' : cls.slice(3, -1);
  lines.push(`    {"${name}", "${body}"},`);
});

process.stdout.write(`//===- UnicodeDelta.inc - Code points PCRE2's tables lack -------*- C++ -*-===//
//
// GENERATED by lib/Tokenizer/generate-unicode-delta.mjs; do not edit.
// HF tokenizers ${hfVersion} (npm) vs PCRE2 with Unicode ${pcre.unicode}: per general category, the code
// points HF's regex engine matches and PCRE2 does not; for "s", all that HF's \\s matches. As PCRE2
// class-body text.
//
//===----------------------------------------------------------------------===//

${lines.join('\n')}
`);
if (removals.length) {
  // Nothing can take a code point out of PCRE2's \\p{..}; say so rather than pretend.
  process.stderr.write(`generate-unicode-delta: PCRE2 matches code points HF does not (not corrected):\n  ${removals.join('\n  ')}\n`);
}
