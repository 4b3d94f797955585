// What the check scripts share: one line per check ("ok   name" / "FAIL name detail"), a
// summary "N passed, M failed", exit 1 if any failed.
let passed = 0, failed = 0;

export function check(name, cond, detail = "") {
  if (cond) { passed++; console.log(`ok   ${name}`); }
  else { failed++; console.log(`FAIL ${name} ${detail}`); }
}

// The next `ev` of emitter `s` (its arguments), or an error after `ms`.
export const once = (s, ev, ms = 8000) => new Promise((res, rej) => {
  const t = setTimeout(() => rej(new Error(`timeout waiting for ${ev}`)), ms);
  s.once(ev, (...a) => { clearTimeout(t); res(a); });
});

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Prints the summary and exits.
export function finish() {
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed === 0 ? 0 : 1);
}
