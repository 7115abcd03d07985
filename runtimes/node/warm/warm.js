// Imported once by shim.js after it listens: it loads the ES module loader (and its package.json
// lookups) before a function needs it, so a bind does not pay for them.
export default null;
