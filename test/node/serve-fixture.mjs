// Builds (or finds current) the model the dsv3-serve tests serve: see fixture() in
// serve-helpers.mjs. ctest runs it once as the `serve-fixture` setup of node-serve and
// node-serve-robustness; either test also builds it on its own when run alone.
import { fixture } from './serve-helpers.mjs';

const f = fixture();
console.log(`dsv3-serve test model: ${f.artifact} (weights ${f.ckpt}, vocab ${f.config.vocab_size})`);
