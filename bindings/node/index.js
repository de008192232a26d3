'use strict'
// The package's entry point: loads the native module that `napi build --platform --release`
// (`npm run build`) puts beside this file, and exports its namespaces `mux`, `wire`,
// `frontier`, `flow` and `transfer`. The module's types are in index.d.ts, which the same build generates.

const { existsSync } = require('node:fs')
const { join } = require('node:path')
const { version } = require('./package.json')

const BUILD_HINT = 'build it with `npm run build` (napi build --platform --release) in the ' +
  "package's folder, or `make node` in the weir repository"

/** The file names napi-rs gives the native module on this platform, most likely first. */
function candidates () {
  const base = `weir.${process.platform}-${process.arch}`
  switch (process.platform) {
    case 'linux': {
      const glibc = process.report?.getReport?.().header?.glibcVersionRuntime
      return glibc ? [`${base}-gnu.node`, `${base}-musl.node`] : [`${base}-musl.node`, `${base}-gnu.node`]
    }
    case 'win32':
      return [`${base}-msvc.node`, `${base}-gnu.node`]
    default:
      return [`${base}.node`]
  }
}

function fail (message, cause) {
  const error = new Error(`weir: ${message}: ${BUILD_HINT}`, cause ? { cause } : undefined)
  error.code = 'WEIR_NATIVE_MODULE'
  return error
}

function load () {
  const found = candidates().map((name) => join(__dirname, name)).filter((path) => existsSync(path))
  if (found.length === 0) {
    throw fail(`no native module for ${process.platform}-${process.arch} (looked for ` +
      `${candidates().join(', ')} in ${__dirname})`)
  }
  let native
  try {
    native = require(found[0])
  } catch (cause) {
    throw fail(`${found[0]} does not load in Node ${process.version} (${cause.message})`, cause)
  }
  const built = typeof native.nativeVersion === 'function' ? native.nativeVersion() : 'unknown'
  if (built !== version) {
    throw fail(`${found[0]} was built from weir ${built}, but this package is weir ${version}`)
  }
  return native
}

const native = load()

module.exports.mux = native.mux
module.exports.wire = native.wire
module.exports.frontier = native.frontier
module.exports.flow = native.flow
module.exports.transfer = native.transfer
module.exports.nativeVersion = native.nativeVersion
