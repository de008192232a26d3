// The package's ES module entry point: the same exports as index.js.
import native from './index.js'

export const { mux, wire, frontier, flow, transfer, nativeVersion } = native
export default native
