'use strict'
// Arbitrary bytes through every decoding entry point of the binding, from a fixed seed: each call
// returns a value or throws an Error with a WEIR_ code, and a session that takes them ends in a
// `closed` output at most. A panic in the native module would abort this process.

const assert = require('node:assert/strict')
const { test } = require('node:test')
const { mux, wire, frontier, transfer } = require('weir')

/** xorshift32 from a fixed seed: the same inputs every run. */
function random (seed) {
  let x = seed
  return () => {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    return (x >>> 0) / 0x100000000
  }
}

/** Bytes that are often almost frames: a kind byte, small varints, then noise. */
function input (next) {
  const n = Math.floor(next() * 64)
  const bytes = Buffer.alloc(n)
  for (let i = 0; i < n; i++) {
    const r = next()
    bytes[i] = r < 0.3 ? Math.floor(next() * 24) : r < 0.4 ? 0xff : Math.floor(next() * 256)
  }
  return bytes
}

const OUTPUTS = new Set(['transmit', 'opened', 'readable', 'writable', 'remoteClosedSend', 'remoteError',
  'remoteCanceled', 'remoteClosed', 'finished', 'closed'])

function weirOnly (f) {
  try {
    return f()
  } catch (error) {
    assert.ok(error instanceof Error && /^WEIR_/.test(error.code), `threw ${error?.code}: ${error?.message}`)
    return undefined
  }
}

test('sessions take arbitrary bytes and end in a closed output at most', () => {
  const next = random(0x5eed)
  const seen = new Map()
  for (let round = 0; round < 600; round++) {
    const config = round % 2 === 0 ? new mux.Config() : mux.Config.mux()
    const session = new mux.Session(round % 4 < 2 ? 'server' : 'client', config)
    let closed = 0
    // Half the rounds open a stream first, so that the noise also lands on a live stream.
    const invoke = wire.encodeFrame({ kind: 1, done: true, control: false, stream: 1n, message: 1n, data: Buffer.from('/a') })
    for (let chunk = 0; chunk < 8 && !session.isClosed(); chunk++) {
      const noise = input(next)
      session.handleInput(BigInt(chunk), chunk === 0 && round % 2 === 0 ? Buffer.concat([invoke, noise]) : noise)
      for (let output; (output = session.pollOutput()) !== null;) {
        assert.ok(OUTPUTS.has(output.type), output.type)
        seen.set(output.type, (seen.get(output.type) ?? 0) + 1)
        if (output.type === 'transmit') session.handleWritten(output.data.length)
        if (output.type === 'readable') weirOnly(() => session.read(output.stream))
        if (output.type === 'closed') closed++
      }
    }
    assert.ok(closed <= 1)
    assert.equal(session.isClosed(), closed === 1)
  }
  // The inputs reach past the first byte: streams open and close, not only refusals.
  assert.ok((seen.get('closed') ?? 0) > 100 && (seen.get('opened') ?? 0) > 0, JSON.stringify([...seen]))
})

test('the codec functions take arbitrary bytes', () => {
  const next = random(0xc0dec)
  for (let round = 0; round < 3000; round++) {
    const bytes = input(next)
    weirOnly(() => wire.parseFrame(bytes))
    weirOnly(() => wire.readVarint(bytes))
    weirOnly(() => wire.decodeMetadata(bytes))
    assert.equal(typeof wire.decodeError(bytes).code, 'bigint')
    const reader = round % 3 === 0 ? new wire.PacketReader(16) : wire.PacketReader.go(0)
    reader.feed(bytes)
    weirOnly(() => { while (reader.read() !== null); })
    weirOnly(() => frontier.Checkpoint.fromBytes(bytes))
  }
})

test('the transfer machine, frontend and reset take arbitrary bytes', () => {
  const next = random(0x7a5f)
  for (let round = 0; round < 300; round++) {
    const machine = new transfer.Machine(0n)
    for (let chunk = 0; chunk < 6 && !machine.isClosed(); chunk++) {
      const bytes = input(next)
      weirOnly(() => (chunk % 2 === 0 ? machine.handleClientInput(0n, bytes) : machine.handleServerInput(0n, 0n, bytes)))
      while (machine.pollOutput() !== null);
    }
    const frontend = new transfer.Frontend(0n)
    const reset = new transfer.Reset(0n)
    for (let chunk = 0; chunk < 4; chunk++) {
      const bytes = input(next)
      weirOnly(() => frontend.handleInput(0n, bytes))
      weirOnly(() => reset.handleInput(0n, bytes))
      while (frontend.pollOutput() !== null);
      while (reset.pollOutput() !== null);
    }
  }
})
