'use strict'
// weir/net against the stock Go DRPC peer (tests/interop/go, built by `make go-peer`), in compat
// mode, both ways: the weir/net client against the Go server, and the Go client against a
// weir/net server that serves the same rpcs. WEIR_GO_PEER names the peer's binary (default
// target/drpc-go-peer in the repository).

const assert = require('node:assert/strict')
const { spawn, execFile } = require('node:child_process')
const { existsSync } = require('node:fs')
const { join } = require('node:path')
const { describe, test, before, after } = require('node:test')
const { setTimeout: sleep } = require('node:timers/promises')
const { promisify } = require('node:util')
const { mux } = require('weir')
const { connect, serve, Router, RemoteError } = require('weir/net')

const PEER = process.env.WEIR_GO_PEER ?? join(__dirname, '..', '..', '..', 'target', 'drpc-go-peer')
const skip = existsSync(PEER) ? false : `no Go peer at ${PEER}: run \`make go-peer\``

// Both sides take packets up to 32 MiB, as the Go peer does, so that 16 MiB messages fit.
const config = () => new mux.Config({ maxPacketLen: 32 << 20, maxUnreadPerStream: 32 << 20 })
const RPC = (name) => `/interop.Interop/${name}`
const FAIL_CODE = 4242424242424n

/** The bytes the Go peer's pattern(n) makes. */
function pattern (n) {
  const out = Buffer.alloc(n)
  for (let i = 0; i < n; i++) out[i] = (i * 31 + (i >> 8)) % 251
  return out
}

describe('the weir/net client against the Go server', { skip }, () => {
  let peer
  let client
  before(async () => {
    peer = spawn(PEER, ['-mode', 'server', '-addr', '127.0.0.1:0'], { stdio: ['ignore', 'pipe', 'inherit'] })
    const addr = await new Promise((resolve, reject) => {
      let out = ''
      peer.stdout.on('data', (chunk) => {
        out += chunk
        const match = /listening (\S+):(\d+)/.exec(out)
        if (match) resolve(Number(match[2]))
      })
      peer.once('exit', (code) => reject(new Error(`the Go peer exited with ${code}`)))
    })
    client = await connect({ port: addr, config: config() })
  })
  after(async () => {
    await client?.close()
    peer?.kill()
  })

  const echo = async (message) => {
    const reply = await client.call(RPC('Echo'), message)
    assert.ok(reply.equals(Buffer.from(message)), `an echo of ${message.length} bytes came back different`)
  }

  test('unary', () => echo(Buffer.from('hello from node')))
  test('empty', () => echo(Buffer.alloc(0)))
  test('error', async () => {
    await assert.rejects(client.call(RPC('Fail'), 'node'), { code: 'WEIR_REMOTE', drpcCode: FAIL_CODE, message: 'boom: node' })
    await echo(Buffer.from('after error'))
  })
  test('server-stream', async () => {
    const stream = client.open(RPC('ServerStream'))
    await stream.send('5')
    await stream.closeSend()
    const got = []
    for await (const message of stream) got.push(String(message))
    assert.deepEqual(got, ['0', '1', '2', '3', '4'])
  })
  test('client-stream', async () => {
    const stream = client.open(RPC('ClientStream'))
    for (const part of ['one', 'two', '', 'three']) await stream.send(part)
    await stream.closeSend()
    const got = []
    for await (const message of stream) got.push(String(message))
    assert.deepEqual(got, ['4:one,two,,three'])
  })
  test('bidi', async () => {
    const stream = client.open(RPC('Bidi'))
    for (let i = 0; i < 10; i++) {
      await stream.send(`ping ${i}`)
      assert.equal(String(await stream.read()), `ping ${i}`)
    }
    await stream.closeSend()
    assert.equal(await stream.read(), null)
  })
  test('metadata', async () => {
    const reply = await client.call(RPC('Metadata'), '', { metadata: { tenant: 'acme', trace: 'ü-1', empty: '' } })
    assert.equal(String(reply), 'empty=\ntenant=acme\ntrace=ü-1')
  })
  test('large-1m', () => echo(pattern(1 << 20)))
  test('large-16m', () => echo(pattern(16 << 20)))
  for (const [name, pause] of [['cancel', 100], ['cancel-then-call', 0]]) {
    test(name, async () => {
      const controller = new AbortController()
      const stream = client.open(RPC('Hold'), { signal: controller.signal })
      for (let i = 0; i < 2; i++) {
        await stream.send(`hold ${i}`)
        assert.equal(String(await stream.read()), `hold ${i}`)
      }
      controller.abort()
      await assert.rejects(stream.read(), { name: 'AbortError' })
      await sleep(pause)
      await echo(Buffer.from('after cancel'))
      assert.equal(String(await client.call(RPC('CancelReport'), '')), 'received 2, then canceled')
    })
  }
  test('unknown', async () => {
    await assert.rejects(client.call(RPC('Nope'), 'x'),
      { code: 'WEIR_REMOTE', drpcCode: 0n, message: `protocol error: unknown rpc: "${RPC('Nope')}"` })
    await echo(Buffer.from('after unknown'))
  })
})

/** The Go peer's rpcs, served by weir/net. */
function interopRouter () {
  const holds = []
  const waiters = []
  const report = (text) => (waiters.length > 0 ? waiters.shift()(text) : holds.push(text))
  return new Router()
    .unary(RPC('Echo'), (request) => request.message)
    .unary(RPC('Fail'), (request) => { throw new RemoteError(FAIL_CODE, `boom: ${request.message}`) })
    .unary(RPC('Metadata'), (request) =>
      Object.entries(request.metadata).map(([k, v]) => `${k}=${v}`).sort().join('\n'))
    .unary(RPC('CancelReport'), () =>
      holds.length > 0 ? holds.shift() : new Promise((resolve) => waiters.push(resolve)))
    .stream(RPC('ServerStream'), async (stream) => {
      const n = Number(String(await stream.read()))
      for (let i = 0; i < n; i++) await stream.send(String(i))
    })
    .stream(RPC('ClientStream'), async (stream) => {
      const parts = []
      for await (const message of stream) parts.push(String(message))
      await stream.send(`${parts.length}:${parts.join(',')}`)
    })
    .stream(RPC('Bidi'), async (stream) => {
      for await (const message of stream) await stream.send(message)
    })
    .stream(RPC('Hold'), async (stream) => {
      let n = 0
      try {
        for await (const message of stream) {
          n++
          await stream.send(message)
        }
        report(`received ${n}, then the end`)
      } catch (error) {
        report(`received ${n}, then ${error.name === 'AbortError' ? 'canceled' : error.message}`)
        throw error
      }
    })
}

describe('the Go client against a weir/net server', { skip }, () => {
  let server
  before(async () => {
    server = await serve(interopRouter(), { port: 0, config: config() })
  })
  after(() => server?.close())

  const cases = ['unary', 'empty', 'error', 'server-stream', 'client-stream', 'bidi', 'metadata',
    'large-1m', 'large-16m', 'cancel', 'cancel-then-call', 'unknown']
  for (const name of cases) {
    test(name, async () => {
      const { stdout } = await promisify(execFile)(PEER,
        ['-mode', 'client', '-addr', `127.0.0.1:${server.port}`, '-case', name]).catch((error) => error)
      assert.equal(stdout.trim(), `PASS ${name}`)
    })
  }
})
