'use strict'
// mux: two sessions driven against each other in memory on a virtual clock, and every error
// code the machines throw, provoked once.

const assert = require('node:assert/strict')
const { test } = require('node:test')
const { mux, wire } = require('weir')
const { Config, Session } = mux

const SECOND = 1_000_000_000n

/** Moves bytes both ways until neither side has any; returns each side's other outputs. */
function pump (now, a, b) {
  const reports = [[], []]
  for (let moved = true; moved;) {
    moved = false
    for (const [side, src, dst] of [[0, a, b], [1, b, a]]) {
      for (let output; (output = src.pollOutput()) !== null;) {
        if (output.type === 'transmit') {
          dst.handleInput(now, output.data)
          src.handleWritten(output.data.length)
          moved = true
        } else {
          reports[side].push(output)
        }
      }
    }
  }
  return reports
}

function drain (session, stream) {
  const messages = []
  for (let m; Buffer.isBuffer(m = session.read(stream));) messages.push(m.toString())
  return messages
}

function throwsCode (f, code) {
  assert.throws(f, (error) => error instanceof Error && error.code === code && error.message.length > 0)
}

test('a unary call in compat mode', () => {
  const client = new Session('client')
  const server = new Session('server', new Config())
  const stream = client.openStream(0n, '/echo.Echo/Unary', { k: 'v' })
  assert.equal(stream, 1n)
  client.send(0n, stream, Buffer.from('hello'))
  client.closeSend(0n, stream)
  const [, served] = pump(0n, client, server)
  assert.deepEqual(served[0], { type: 'opened', stream, rpc: '/echo.Echo/Unary', metadata: { k: 'v' } })
  assert.ok(served.some((o) => o.type === 'readable' && o.stream === stream))
  assert.ok(served.some((o) => o.type === 'remoteClosedSend' && o.stream === stream))
  assert.deepEqual(drain(server, stream), ['hello'])
  assert.deepEqual(server.read(stream), { type: 'eof' })

  server.send(SECOND, stream, new Uint8Array(Buffer.from('HELLO')))
  server.closeSend(SECOND, stream)
  const [answered, finished] = pump(SECOND, client, server)
  assert.ok(answered.some((o) => o.type === 'readable'))
  assert.deepEqual(drain(client, stream), ['HELLO'])
  assert.deepEqual(client.read(stream), { type: 'eof' })
  const [, more] = pump(SECOND, client, server)
  assert.ok([...finished, ...more].some((o) => o.type === 'finished' && o.stream === stream))
  assert.equal(client.metrics().streamsOpened, 1n)
  assert.equal(server.metrics().bytesReceived, client.metrics().bytesSent)
})

test('a bidi stream in mux mode, then a cancel', () => {
  const client = new Session('client', Config.mux())
  const server = new Session('server', Config.mux())
  const stream = client.openStream(0n, '/echo.Echo/Bidi')
  for (let i = 0n; i < 5n; i++) {
    client.send(i, stream, Buffer.from(`ping ${i}`))
    pump(i, client, server)
    for (const message of drain(server, stream)) server.send(i, stream, Buffer.from(message.replace('ping', 'pong')))
    pump(i, client, server)
    assert.deepEqual(drain(client, stream), [`pong ${i}`])
  }
  client.cancel(10n, stream)
  const [, served] = pump(10n, client, server)
  assert.ok(served.some((o) => o.type === 'remoteCanceled' && o.stream === stream))
  assert.deepEqual(server.read(stream), { type: 'canceled' })
})

test('a DRPC error reaches the reader with its code and message', () => {
  const client = new Session('client')
  const server = new Session('server')
  const stream = client.openStream(0n, '/a')
  client.closeSend(0n, stream)
  pump(0n, client, server)
  server.sendError(0n, stream, 4242424242424n, 'boom')
  const [reports] = pump(0n, client, server)
  assert.ok(reports.some((o) => o.type === 'remoteError' && o.code === 4242424242424n && o.message === 'boom'))
  assert.deepEqual(client.read(stream), { type: 'failed', code: 4242424242424n, message: 'boom' })
})

test('a 1 MiB message arrives whole in both modes', () => {
  const big = Buffer.alloc(1 << 20)
  for (let i = 0; i < big.length; i++) big[i] = (i * 31 + (i >> 8)) % 251
  for (const config of [new Config(), Config.mux()]) {
    const client = new Session('client', config)
    const server = new Session('server', config)
    const stream = client.openStream(0n, '/big')
    client.send(0n, stream, big)
    client.closeSend(0n, stream)
    pump(0n, client, server)
    const got = server.read(stream)
    assert.ok(Buffer.isBuffer(got) && got.equals(big), config.mode)
    assert.deepEqual(server.read(stream), { type: 'eof' }, config.mode)
  }
})

test('a peer breaking the protocol closes the session', () => {
  const server = new Session('server', Config.mux())
  server.handleInput(0n, Buffer.alloc(32, 0xff))
  const output = server.pollOutput()
  assert.equal(output.type, 'closed')
  assert.equal(output.isLimit, false)
  assert.match(output.reason, /protocol error/)
  assert.equal(server.pollOutput(), null)
  assert.equal(server.isClosed(), true)
  throwsCode(() => server.handleInput(1n, Buffer.from([0])), 'WEIR_CLOSED')
  throwsCode(() => server.send(1n, 1n, Buffer.from('late')), 'WEIR_CLOSED')
})

test('an idle server closes at its deadline', () => {
  const server = new Session('server', new Config({ idleTimeoutNs: 5n * SECOND, handshakeTimeoutNs: null }))
  server.handleInput(0n, Buffer.alloc(0))
  const deadline = server.pollTimeout()
  assert.equal(deadline, 5n * SECOND)
  server.handleTimeout(deadline)
  const output = server.pollOutput()
  assert.equal(output.type, 'closed')
  assert.equal(output.isLimit, true)
})

test('config defaults are the core\'s, and options override them', () => {
  const compat = new Config()
  const muxed = Config.mux()
  assert.equal(compat.mode, 'compat')
  assert.equal(muxed.mode, 'mux')
  assert.equal(compat.handshakeTimeoutNs, 10n * SECOND)
  assert.equal(compat.idleTimeoutNs, 300n * SECOND)
  assert.equal(compat.splitSize, 65536)
  assert.equal(compat.maxUnreadPerStream, 4 << 20)
  assert.equal(muxed.maxUnreadPerStream, 16 << 20)
  assert.equal(compat.maxUnwritten, null)
  const tuned = Config.mux({ maxUnwritten: 1024, idleTimeoutNs: null, splitSize: 100 })
  assert.deepEqual([tuned.maxUnwritten, tuned.idleTimeoutNs, tuned.splitSize, tuned.mode], [1024, null, 100, 'mux'])
  assert.equal(new Config({ mode: 'mux', maxUnreadPerStream: 16 << 20 }).maxUnreadPerStream, muxed.maxUnreadPerStream)
})

test('WEIR_USAGE: local misuse and bad arguments', () => {
  throwsCode(() => new Session('client').read(7n), 'WEIR_USAGE')
  throwsCode(() => new Session('server').openStream(0n, '/a'), 'WEIR_USAGE')
  throwsCode(() => new Session('neither'), 'WEIR_USAGE')
  throwsCode(() => new Config({ mode: 'fast' }), 'WEIR_USAGE')
  throwsCode(() => new Config({ splitSize: 0 }), 'WEIR_USAGE')
  throwsCode(() => new Config({ maxTransmit: -1 }), 'WEIR_USAGE')
  throwsCode(() => new Session('client').handleTimeout(-1n), 'WEIR_USAGE')
  throwsCode(() => wire.encodeVarint(1n << 64n), 'WEIR_USAGE')
})

test('WEIR_LIMIT: a configured limit reached', () => {
  const muxed = new Session('client', new Config({ mode: 'mux', maxConcurrentStreams: 1 }))
  muxed.openStream(0n, '/a')
  throwsCode(() => muxed.openStream(0n, '/b'), 'WEIR_LIMIT')
  const client = new Session('client', Config.mux({ sendBufferPerStream: 10, maxQueuedOutput: 64, splitSize: 8 }))
  const stream = client.openStream(0n, '/a')
  client.send(0n, stream, Buffer.alloc(8))
  throwsCode(() => client.send(0n, stream, Buffer.alloc(8)), 'WEIR_LIMIT')
})

test('WEIR_CLOSED: the machine is closed', () => {
  const server = new Session('server')
  server.handleInput(0n, Buffer.alloc(16, 0xff))
  while (server.pollOutput() !== null);
  throwsCode(() => server.handleInput(0n, Buffer.alloc(0)), 'WEIR_CLOSED')
})

test('WEIR_REMOTE_PROTOCOL: bytes that break the wire format', () => {
  throwsCode(() => wire.decodeMetadata(Buffer.from([0x0a, 0x05, 0x0a])), 'WEIR_REMOTE_PROTOCOL')
  const reader = new wire.PacketReader()
  reader.feed(Buffer.from('0501020568656c6c6f0501010568656c6c6f', 'hex'))
  reader.read()
  throwsCode(() => reader.read(), 'WEIR_REMOTE_PROTOCOL')
})
