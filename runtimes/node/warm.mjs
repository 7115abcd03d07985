// Imported once by shim.js after it listens: it loads Node's ES module loader before a function needs it.
export default null;
