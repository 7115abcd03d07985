// ES module resolution hook (module.register, from shim.js): `import ... from './sdk'` (also '../sdk',
// './sdk.js', './sdk/index.js') resolves to the runtime's sdk.js when the function has no such module
// of its own, or only a folder of generated types (an ES import of a folder fails anyway).
const SDK = /^\.\.?\/(?:\.\.\/)*sdk(?:\/index)?(?:\.[cm]?js)?$/;
const FALLBACK_CODES = new Set(['ERR_MODULE_NOT_FOUND', 'ERR_UNSUPPORTED_DIR_IMPORT']);
let sdkUrl = null;

export async function initialize(data) {
  sdkUrl = data.sdkUrl;
}

export async function resolve(specifier, context, nextResolve) {
  try {
    return await nextResolve(specifier, context);
  } catch (err) {
    if (sdkUrl && SDK.test(specifier) && err && FALLBACK_CODES.has(err.code)) return { url: sdkUrl, shortCircuit: true };
    throw err;
  }
}
