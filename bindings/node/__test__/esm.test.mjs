// The package from an ES module: the same objects as from CommonJS, and a call over weir/net.

import assert from 'node:assert/strict'
import { createRequire } from 'node:module'
import { test } from 'node:test'
import weir, { flow, frontier, mux, transfer, wire } from 'weir'
import { connect, RemoteError, Router, serve } from 'weir/net'

const require = createRequire(import.meta.url)

test('ESM and CommonJS load one native module', () => {
  assert.equal(mux, require('weir').mux)
  assert.equal(weir.frontier, frontier)
  assert.equal(typeof flow.FlowControl, 'function')
  assert.equal(transfer.Machine, require('weir').transfer.Machine)
  assert.equal(wire.PacketReader, require('weir').wire.PacketReader)
  assert.equal(connect, require('weir/net').connect)
})

test('a unary call and a DRPC error from ESM, in mux mode', async () => {
  const router = new Router()
    .unary('/e.E/Echo', (request) => request.message)
    .unary('/e.E/Fail', () => { throw new RemoteError(7, 'no') })
  const server = await serve(router, { mode: 'mux' })
  const client = await connect({ port: server.port, mode: 'mux' })
  try {
    assert.equal(String(await client.call('/e.E/Echo', 'from esm')), 'from esm')
    await assert.rejects(client.call('/e.E/Fail', ''), { code: 'WEIR_REMOTE', drpcCode: 7n })
  } finally {
    await client.close()
    await server.close()
  }
})
