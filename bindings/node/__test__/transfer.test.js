'use strict'
// transfer: a session relayed, a transfer started at an idle point, and its deadline, on a
// virtual clock.

const assert = require('node:assert/strict')
const { test } = require('node:test')
const { transfer } = require('weir')

const SECOND = 1_000_000_000n

/** A pgwire StartupMessage (protocol 3.0) with `params`. */
function startup (params) {
  const body = Buffer.concat([
    ...Object.entries(params).flatMap(([k, v]) => [Buffer.from(`${k}\0`), Buffer.from(`${v}\0`)]),
    Buffer.from([0])
  ])
  const head = Buffer.alloc(8)
  head.writeInt32BE(8 + body.length, 0)
  head.writeInt32BE(196608, 4)
  return Buffer.concat([head, body])
}

// AuthenticationOk, BackendKeyData (process 7, secret 42), ReadyForQuery (idle).
const GREETING = Buffer.from('R\0\0\0\x08\0\0\0\0K\0\0\0\x0c\0\0\0\x07\0\0\0\x2aZ\0\0\0\x05I', 'latin1')

function drain (machine) {
  const outputs = []
  for (let output; (output = machine.pollOutput()) !== null;) outputs.push(output)
  return outputs
}

test('a session is relayed, and a transfer asks the old server for its state', () => {
  const now = SECOND
  const machine = new transfer.Machine(0n)
  machine.handleClientInput(now, startup({ user: 'alice' }))
  const toServer = drain(machine)
  assert.equal(toServer.length, 1)
  assert.equal(toServer[0].type, 'transmit')
  assert.equal(toServer[0].to, 0n)
  assert.ok(toServer[0].data.includes(Buffer.from('user\0alice\0')))

  assert.deepEqual(machine.startupParams(), [['user', 'alice']])
  machine.handleServerInput(now, 0n, GREETING)
  const toClient = drain(machine)
  assert.ok(toClient.every((o) => o.type === 'transmit' && o.to === 'client' && o.source === 'server'))
  assert.deepEqual(Buffer.concat(toClient.map((o) => o.data)), GREETING)
  assert.equal(machine.atSafePoint(), true)
  assert.deepEqual(machine.cancelKeys().client, { processId: 7, secret: Buffer.from([0, 0, 0, 42]) })

  machine.requestTransfer(now, 'key1', 1n)
  const [query] = drain(machine)
  assert.deepEqual([query.type, query.to, query.source], ['transmit', 0n, 'machine'])
  assert.deepEqual(query.data.subarray(5), Buffer.from("SHOW TRANSFER STATE WITH 'key1'\0"))
  assert.equal(machine.isTransferring(), true)

  // Client bytes are held while the transfer runs.
  machine.handleClientInput(now, Buffer.from('Q\0\0\0\x0dSELECT 1\0', 'latin1'))
  assert.equal(machine.pollOutput(), null)
  assert.ok(machine.bufferedLen() >= 14, 'the held Query')
  assert.equal(machine.pollTimeout(), 16n * SECOND)

  // No answer before the deadline: past the point of no return, the session is closed.
  machine.handleTimeout(16n * SECOND)
  const ending = drain(machine)
  const outcome = ending.find((o) => o.type === 'outcome')
  assert.equal(outcome.outcome.key, 'key1')
  assert.equal(outcome.outcome.result, 'fatal')
  assert.equal(typeof outcome.outcome.failure, 'string')
  assert.equal(ending.at(-1).type, 'closed')
  assert.equal(machine.isClosed(), true)
  assert.equal(machine.metrics().errorFatal, 1n)
  assert.throws(() => machine.handleClientInput(now, Buffer.from('x')), { code: 'WEIR_CLOSED' })
})

test('misuse throws WEIR_USAGE', () => {
  const machine = new transfer.Machine(0n, { dialect: 'postgres', transferTimeoutNs: SECOND })
  assert.throws(() => new transfer.Machine(0n, { dialect: 'oracle' }), { code: 'WEIR_USAGE' })
  machine.handleClientInput(0n, startup({ user: 'bob' }))
  machine.handleServerInput(0n, 0n, GREETING)
  drain(machine)
  assert.throws(() => machine.requestTransfer(0n, 'k', 0n), { code: 'WEIR_USAGE' })
  assert.throws(() => machine.handleNewServerConnected(0n, 5n), { code: 'WEIR_USAGE' })
  machine.requestTransfer(0n, 'k', 1n)
  const [query] = drain(machine)
  assert.match(query.data.toString('latin1'), /weir\.show_transfer_state\('k'\)/)
  assert.equal(machine.pollTimeout(), SECOND)
  assert.throws(() => machine.requestTransfer(0n, 'k2', 2n), { code: 'WEIR_USAGE' })
})

test('the frontend answers encryption requests and hands on the startup or a cancel', () => {
  const SSL_REQUEST = Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f])
  const frontend = new transfer.Frontend(0n)
  assert.equal(frontend.pollTimeout(), 60n * SECOND)
  frontend.handleInput(0n, SSL_REQUEST)
  assert.deepEqual(frontend.pollOutput(), { type: 'transmit', data: Buffer.from('N') })
  const message = transfer.buildStartupMessage([['user', 'alice'], ['database', 'app']])
  assert.deepEqual(message, startup({ user: 'alice', database: 'app' }))
  frontend.handleInput(0n, message)
  assert.deepEqual(frontend.pollOutput(), { type: 'startup', data: message })
  assert.equal(frontend.isFinished(), true)
  assert.throws(() => frontend.handleInput(0n, Buffer.from('x')), { code: 'WEIR_CLOSED' })

  const canceling = new transfer.Frontend(0n)
  const key = { processId: 7, secret: Buffer.from([0, 0, 0, 42]) }
  canceling.handleInput(0n, transfer.buildCancelRequest(key))
  assert.deepEqual(canceling.pollOutput(), { type: 'cancel', key })

  const broken = new transfer.Frontend(0n, { maxStartupLen: 100 })
  broken.handleInput(0n, Buffer.from([0, 0, 1, 0]))
  const closed = broken.pollOutput()
  assert.equal(closed.type, 'closed')
  assert.match(closed.reason, /outside 8\.\.=100/)

  const silent = new transfer.Frontend(0n, { loginTimeoutNs: SECOND })
  silent.handleTimeout(SECOND)
  assert.equal(silent.pollOutput().type, 'closed')
  assert.throws(() => transfer.buildStartupMessage([['user', 'a\0b']]), { code: 'WEIR_USAGE' })
  assert.throws(() => transfer.buildStartupMessage([['user']]), { code: 'WEIR_USAGE' })
})

test('a reset discards the session and reports done, or failed on an error', () => {
  const reset = new transfer.Reset(SECOND)
  const queries = reset.pollOutput()
  assert.equal(queries.type, 'transmit')
  assert.deepEqual(queries.data.subarray(5, 17), Buffer.from('DISCARD ALL\0'))
  assert.equal(reset.pollTimeout(), 6n * SECOND)
  reset.handleInput(SECOND, Buffer.from('C\0\0\0\x10DISCARD ALL\0Z\0\0\0\x05IC\0\0\0\x0dSELECT 1\0Z\0\0\0\x05I', 'latin1'))
  assert.deepEqual(reset.pollOutput(), { type: 'done' })
  assert.equal(reset.isFinished(), true)

  const failing = new transfer.Reset(0n, { timeoutNs: SECOND })
  failing.pollOutput()
  failing.handleInput(0n, transfer.buildErrorResponse('57P01', 'terminating connection'))
  assert.deepEqual(failing.pollOutput(), { type: 'failed', reason: 'resetting a server failed' })
  const closing = new transfer.Reset(0n)
  closing.pollOutput()
  closing.handleEof(0n)
  assert.equal(closing.pollOutput().type, 'failed')
  assert.match(transfer.buildQuery('SELECT 1').toString('latin1'), /^Q\0\0\0\x0dSELECT 1\0$/)
})
