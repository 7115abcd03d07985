// Imported once by shim.js after it listens, and its handler called once through the call path: the ES
// module loader (and its package.json lookups) and a call's code are warm before a function needs them.
export default async function handler(req, res) {
  return res.json({ ok: true, path: req.path, a: req.query.a, input: req.input });
}
