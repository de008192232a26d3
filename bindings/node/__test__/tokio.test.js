'use strict'
// weir/net against weir-tokio, in both modes: the weir/net client against a weir-tokio server
// (the echo server of examples/, `hostile_server`), and a weir-tokio client (examples/,
// `tokio_client`, which runs its cases and prints PASS or FAIL for each) against a weir/net
// server. WEIR_TOKIO_SERVER and WEIR_TOKIO_CLIENT name the binaries (default: under
// target/release in the repository; `make node` builds both).

const assert = require('node:assert/strict')
const { spawn } = require('node:child_process')
const { existsSync } = require('node:fs')
const { join } = require('node:path')
const { execFile } = require('node:child_process')
const { promisify } = require('node:util')
const { describe, test, before, after } = require('node:test')
const { connect, serve, Router, RemoteError } = require('weir/net')

const SERVER = process.env.WEIR_TOKIO_SERVER ??
  join(__dirname, '..', '..', '..', 'target', 'release', 'hostile_server')
const skip = existsSync(SERVER) ? false : `no weir-tokio server at ${SERVER}: run \`make node\``
const CLIENT = process.env.WEIR_TOKIO_CLIENT ??
  join(__dirname, '..', '..', '..', 'target', 'release', 'tokio_client')
const skipClient = existsSync(CLIENT) ? false : `no weir-tokio client at ${CLIENT}: run \`make node\``
const CASES = ['unary', 'error', 'unknown', 'metadata', 'bidi', 'large-1m', 'concurrent']

for (const mode of ['compat', 'mux']) {
  describe(`the weir/net client against a weir-tokio server in ${mode} mode`, { skip }, () => {
    let server
    let client
    before(async () => {
      server = spawn(SERVER, ['--mode', mode], { stdio: ['ignore', 'pipe', 'inherit'] })
      const port = await new Promise((resolve, reject) => {
        let out = ''
        server.stdout.on('data', (chunk) => {
          out += chunk
          const match = /listening on \S+:(\d+)/.exec(out)
          if (match) resolve(Number(match[1]))
        })
        server.once('exit', (code) => reject(new Error(`the server exited with ${code}`)))
      })
      client = await connect({ port, mode })
    })
    after(async () => {
      await client?.close()
      server?.kill()
    })

    test('unary, empty and 1 MiB', async () => {
      assert.equal(String(await client.call('/echo.Echo/Unary', 'hello tokio', { metadata: { k: 'v' } })), 'hello tokio')
      assert.equal((await client.call('/echo.Echo/Unary', '')).length, 0)
      const big = Buffer.alloc(1 << 20, 0x5a)
      assert.ok((await client.call('/echo.Echo/Unary', big)).equals(big))
    })

    test('a bidi stream, and many callers at once', async () => {
      const stream = client.open('/echo.Echo/Bidi')
      for (let i = 0; i < 10; i++) {
        await stream.send(`ping ${i}`)
        assert.equal(String(await stream.read()), `ping ${i}`)
      }
      await stream.closeSend()
      assert.equal(await stream.read(), null)
      const replies = await Promise.all(Array.from({ length: 64 }, (_, i) => client.call('/echo.Echo/Unary', `m${i}`)))
      assert.deepEqual(replies.map(String), Array.from({ length: 64 }, (_, i) => `m${i}`))
    })

    test('an unknown rpc, then a cancel, and the connection goes on', async () => {
      await assert.rejects(client.call('/echo.Echo/Nope', 'x'),
        { code: 'WEIR_REMOTE', drpcCode: 0n, message: 'protocol error: unknown rpc: "/echo.Echo/Nope"' })
      const controller = new AbortController()
      const stream = client.open('/echo.Echo/Bidi', { signal: controller.signal })
      await stream.send('held')
      assert.equal(String(await stream.read()), 'held')
      controller.abort()
      await assert.rejects(stream.read(), { name: 'AbortError' })
      assert.equal(String(await client.call('/echo.Echo/Unary', 'after cancel')), 'after cancel')
    })
  })
}

for (const mode of ['compat', 'mux']) {
  test(`a weir-tokio client against a weir/net server in ${mode} mode`, { skip: skipClient }, async () => {
    const router = new Router()
      .unary('/echo.Echo/Unary', (request) => request.message)
      .unary('/echo.Echo/Fail', (request) => { throw new RemoteError(42, `boom: ${request.message}`) })
      .unary('/echo.Echo/Metadata', (request) =>
        Object.entries(request.metadata).map(([k, v]) => `${k}=${v}`).sort().join('\n'))
      .stream('/echo.Echo/Bidi', async (stream) => {
        for await (const message of stream) await stream.send(message)
      })
    const server = await serve(router, { port: 0, mode })
    try {
      const { stdout } = await promisify(execFile)(CLIENT, ['--addr', `127.0.0.1:${server.port}`, '--mode', mode])
        .catch((error) => error)
      assert.deepEqual(stdout.trim().split('\n'), CASES.map((name) => `PASS ${name}`))
    } finally {
      await server.close()
    }
  })
}
