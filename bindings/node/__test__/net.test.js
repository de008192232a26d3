'use strict'
// weir/net: its client against its server over loopback TCP and a Unix socket, in both modes.

const assert = require('node:assert/strict')
const { mkdtempSync, rmSync } = require('node:fs')
const { tmpdir } = require('node:os')
const { join } = require('node:path')
const { describe, test, before, after } = require('node:test')
const { setTimeout: sleep } = require('node:timers/promises')
const net = require('node:net')
const { mux } = require('weir')
const { connect, serve, Router, RemoteError } = require('weir/net')

const MIB = 1 << 20

function pattern (n) {
  const out = Buffer.alloc(n)
  for (let i = 0; i < n; i++) out[i] = (i * 31 + (i >> 8)) % 251
  return out
}

/** The test service: what each rpc does, and what the server saw. */
function router (seen) {
  return new Router()
    .unary('/t.T/Echo', (request) => request.message)
    .unary('/t.T/Fail', (request) => { throw new RemoteError(4242424242424n, `boom: ${request.message}`) })
    .unary('/t.T/Crash', () => { throw new TypeError('a bug') })
    .unary('/t.T/Metadata', (request) => Object.entries(request.metadata).map(([k, v]) => `${k}=${v}`).sort().join('\n'))
    .stream('/t.T/ServerStream', async (stream) => {
      const n = Number(String(await stream.read()))
      for (let i = 0; i < n; i++) await stream.send(String(i))
    })
    .stream('/t.T/ClientStream', async (stream) => {
      const parts = []
      for await (const message of stream) parts.push(String(message))
      await stream.send(`${parts.length}:${parts.join(',')}`)
    })
    .stream('/t.T/Bidi', async (stream) => {
      for await (const message of stream) await stream.send(message)
    })
    .stream('/t.T/Hold', async (stream) => {
      let n = 0
      try {
        for await (const message of stream) {
          n++
          await stream.send(message)
        }
        seen.push(`received ${n}, then the end`)
      } catch (error) {
        seen.push(`received ${n}, then ${error.name}`)
        throw error
      }
    })
    .stream('/t.T/Stall', async (stream) => {
      await stream.read()
      await new Promise((resolve, reject) => {
        stream.signal.addEventListener('abort', () => {
          seen.push(`stalled, then ${stream.signal.reason.name}`)
          reject(stream.signal.reason)
        })
      })
    })
    .stream('/t.T/Flood', async (stream) => {
      for (let i = 0; i < 64; i++) {
        await stream.send(pattern(MIB))
        seen.sent = i + 1
      }
    })
    .stream('/t.T/Slow', async (stream) => {
      await sleep(500)
      seen.before = seen.received
      let n = 0
      for await (const message of stream) n += message.length
      await stream.send(String(n))
    })
}

const socketDir = mkdtempSync(join(tmpdir(), 'weir-net-'))
after(() => rmSync(socketDir, { recursive: true, force: true }))

for (const mode of ['compat', 'mux']) {
  for (const transport of ['tcp', 'unix']) {
    describe(`${mode} mode over ${transport}`, () => {
      const seen = []
      const errors = []
      let server
      let client
      before(async () => {
        const where = transport === 'tcp' ? { port: 0 } : { path: join(socketDir, `${mode}.sock`) }
        server = await serve(router(seen), { ...where, mode, onError: (error) => errors.push(error) })
        client = await connect({ ...(transport === 'tcp' ? { port: server.port } : where), mode })
      })
      after(async () => {
        await client.close()
        await server.close()
      })

      test('unary, and an empty message', async () => {
        assert.equal(String(await client.call('/t.T/Echo', 'hello')), 'hello')
        assert.equal((await client.call('/t.T/Echo', Buffer.alloc(0))).length, 0)
        assert.equal(transport === 'tcp' ? typeof server.port : server.port, transport === 'tcp' ? 'number' : undefined)
      })

      test('a DRPC error comes back with its code and message', async () => {
        await assert.rejects(client.call('/t.T/Fail', 'node'), (error) =>
          error instanceof RemoteError && error.code === 'WEIR_REMOTE' &&
          error.drpcCode === 4242424242424n && error.message === 'boom: node')
        await assert.rejects(client.call('/t.T/Crash', 'x'), { code: 'WEIR_REMOTE', drpcCode: 0n, message: 'a bug' })
        assert.ok(errors.some((error) => error instanceof TypeError))
        assert.equal(String(await client.call('/t.T/Echo', 'after error')), 'after error')
      })

      test('an unknown rpc is refused as Go refuses it', async () => {
        await assert.rejects(client.call('/t.T/Nope', 'x'),
          { code: 'WEIR_REMOTE', drpcCode: 0n, message: 'protocol error: unknown rpc: "/t.T/Nope"' })
        assert.equal(String(await client.call('/t.T/Echo', 'after unknown')), 'after unknown')
      })

      test('metadata', async () => {
        const metadata = { tenant: 'acme', trace: 'ü-1', empty: '' }
        const reply = await client.call('/t.T/Metadata', '', { metadata })
        assert.equal(String(reply), 'empty=\ntenant=acme\ntrace=ü-1')
      })

      test('the three streaming shapes', async () => {
        const down = client.open('/t.T/ServerStream')
        await down.send('5')
        await down.closeSend()
        const got = []
        for await (const message of down) got.push(String(message))
        assert.deepEqual(got, ['0', '1', '2', '3', '4'])

        const up = client.open('/t.T/ClientStream')
        for (const part of ['one', 'two', '', 'three']) await up.send(part)
        await up.closeSend()
        assert.equal(String(await up.read()), '4:one,two,,three')
        assert.equal(await up.read(), null)

        const both = client.open('/t.T/Bidi')
        for (let i = 0; i < 10; i++) {
          await both.send(`ping ${i}`)
          assert.equal(String(await both.read()), `ping ${i}`)
        }
        await both.closeSend()
        assert.equal(await both.read(), null)
      })

      test('1 MiB each way, and calls from many callers at once', async () => {
        const big = pattern(MIB)
        assert.ok((await client.call('/t.T/Echo', big)).equals(big))
        const replies = await Promise.all(Array.from({ length: 32 }, (_, i) => client.call('/t.T/Echo', `m${i}`)))
        assert.deepEqual(replies.map(String), Array.from({ length: 32 }, (_, i) => `m${i}`))
      })

      test('an abort cancels the stream on the server, and the connection goes on', async () => {
        const controller = new AbortController()
        const stream = client.open('/t.T/Hold', { signal: controller.signal })
        for (let i = 0; i < 2; i++) {
          await stream.send(`hold ${i}`)
          assert.equal(String(await stream.read()), `hold ${i}`)
        }
        controller.abort()
        await assert.rejects(stream.read(), { name: 'AbortError' })
        assert.equal(String(await client.call('/t.T/Echo', 'after cancel')), 'after cancel')
        for (let i = 0; i < 50 && seen.length === 0; i++) await sleep(10)
        assert.deepEqual(seen.splice(0), ['received 2, then AbortError'])
      })

      test('a timeout cancels the call', async () => {
        const started = Date.now()
        await assert.rejects(client.call('/t.T/Stall', 'x', { timeout: 100 }), { name: 'TimeoutError' })
        assert.ok(Date.now() - started >= 90)
        assert.equal(String(await client.call('/t.T/Echo', 'after timeout')), 'after timeout')
        for (let i = 0; i < 50 && seen.length === 0; i++) await sleep(10)
        assert.deepEqual(seen.splice(0), ['stalled, then AbortError'])
      })

      test('a reader that does not read holds the sender back, then gets everything', async () => {
        seen.sent = 0
        const stream = client.open('/t.T/Flood')
        await stream.closeSend()
        await sleep(500)
        const sentWhileIdle = seen.sent
        assert.ok(sentWhileIdle < 32, `the server sent ${sentWhileIdle} MiB to a client that read nothing`)
        let total = 0
        for await (const message of stream) {
          assert.equal(message.length, MIB)
          total++
        }
        assert.equal(total, 64)
      })

      test('a server that does not read holds the client\'s sends back', async () => {
        seen.received = 0
        const stream = client.open('/t.T/Slow')
        const sending = (async () => {
          for (let i = 0; i < 64; i++) {
            await stream.send(pattern(MIB))
            seen.received = i + 1
          }
          await stream.closeSend()
        })()
        const reply = await stream.read()
        await sending
        assert.ok(seen.before < 32, `the client sent ${seen.before} MiB to a server that read nothing`)
        assert.equal(String(reply), String(64 * MIB))
      })

      test('close fails what is still open with WEIR_CLOSED', async () => {
        const other = await connect({ ...(transport === 'tcp' ? { port: server.port } : { path: server.address() }), mode })
        const pending = other.call('/t.T/Stall', 'x').then(() => null, (error) => error)
        await sleep(50)
        await other.close()
        assert.equal((await pending)?.code, 'WEIR_CLOSED')
        await assert.rejects(other.call('/t.T/Echo', 'x'), { code: 'WEIR_CLOSED' })
        // The server's handler learns that its connection is gone.
        for (let i = 0; i < 50 && seen.length === 0; i++) await sleep(10)
        assert.deepEqual(seen.splice(0), ['stalled, then Error'])
      })
    })
  }
}

/** Resolves once `socket` is closed by the other side, with the bytes it got. */
function closedBy (socket) {
  const chunks = []
  socket.on('data', (chunk) => chunks.push(chunk))
  socket.on('error', () => {})
  return new Promise((resolve) => socket.on('close', () => resolve(Buffer.concat(chunks))))
}

test('a server closes a peer that breaks the protocol, one that stalls, and one too many', async () => {
  const config = mux.Config.mux({ handshakeTimeoutNs: 200_000_000n })
  const server = await serve(router([]), { port: 0, config, maxConnections: 2 })
  try {
    const garbage = net.connect({ port: server.port })
    garbage.write(Buffer.alloc(64, 0xff))
    assert.equal((await closedBy(garbage)).length, 0)

    const started = Date.now()
    const stalled = net.connect({ port: server.port })
    stalled.write(Buffer.from([0x05, 0x01]))
    await closedBy(stalled)
    assert.ok(Date.now() - started >= 150, 'closed at the handshake timeout, not before')
    await sleep(100) // for the server to see both closes too

    const first = await connect({ port: server.port, mode: 'mux' })
    const second = await connect({ port: server.port, mode: 'mux' })
    const third = net.connect({ port: server.port })
    await closedBy(third)
    assert.equal(String(await second.call('/t.T/Echo', 'still served')), 'still served')
    await first.close()
    await second.close()
  } finally {
    await server.close()
  }
})

test('callers past the stream limit wait their turn in mux mode', async () => {
  const config = mux.Config.mux({ maxConcurrentStreams: 4 })
  let running = 0
  let most = 0
  const slow = new Router().unary('/t.T/Slow', async (request) => {
    most = Math.max(most, ++running)
    await sleep(10)
    running--
    return request.message
  })
  const server = await serve(slow, { port: 0, config })
  const client = await connect({ port: server.port, config })
  try {
    const replies = await Promise.all(Array.from({ length: 40 }, (_, i) => client.call('/t.T/Slow', `m${i}`)))
    assert.deepEqual(replies.map(String), Array.from({ length: 40 }, (_, i) => `m${i}`))
    assert.ok(most <= 4 && most >= 2, `${most} handlers ran at once`)
  } finally {
    await client.close()
    await server.close()
  }
})

test('connecting to nothing rejects', async () => {
  await assert.rejects(connect({ path: join(socketDir, 'nothing.sock') }), { code: 'ENOENT' })
  await assert.rejects(connect({ port: 1, mode: 'fast' }), { code: 'WEIR_USAGE' })
})
