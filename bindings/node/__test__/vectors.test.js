'use strict'
// The Go-recorded DRPC vectors (tests/vectors/drpc) replayed through the binding's codec, byte
// for byte: varints, frames, packets, the reader, error bodies, metadata and whole transcripts.

const assert = require('node:assert/strict')
const { readFileSync } = require('node:fs')
const { join } = require('node:path')
const { test } = require('node:test')
const { wire } = require('weir')

const VECTORS = join(__dirname, '..', '..', '..', 'tests', 'vectors', 'drpc')
const load = (name) => JSON.parse(readFileSync(join(VECTORS, name), 'utf8'))
const hex = (text) => Buffer.from(text, 'hex')
/** The data the split vectors were recorded with when they give only a length. */
const pattern = (n) => Buffer.from(Array.from({ length: n }, (_, i) => (i * 7 + 3) & 0xff))

/** A vector's frame or packet as the binding's object. */
function frameOf (c, data) {
  return { kind: c.kind, done: c.done, control: c.control, stream: BigInt(c.stream), message: BigInt(c.message), data }
}
function packetOf (c, data) {
  return { kind: c.kind, control: c.control, stream: BigInt(c.stream), message: BigInt(c.message), data }
}

/** Go's outcome of thrown decoding: the message of a WEIR_REMOTE_PROTOCOL error. */
function decodeError (f) {
  try {
    f()
  } catch (error) {
    assert.equal(error.code, 'WEIR_REMOTE_PROTOCOL')
    return error.message
  }
  return null
}

test('varints', () => {
  const v = load('varints.json')
  for (const c of v.valid) {
    const encoded = wire.encodeVarint(BigInt(c.value))
    assert.deepEqual(encoded, hex(c.hex), c.value)
    assert.deepEqual(wire.readVarint(encoded), { value: BigInt(c.value), used: encoded.length })
  }
  for (const c of v.invalid) {
    let got = 'incomplete'
    const error = decodeError(() => {
      const result = wire.readVarint(hex(c.hex))
      assert.equal(result, null, `${c.name}: decoded ${result?.value}`)
    })
    if (error !== null) got = error
    assert.equal(got, c.error, c.name)
  }
  for (const c of v.decode_extra) {
    const input = hex(c.hex)
    const { value, used } = wire.readVarint(input)
    assert.equal(value, BigInt(c.value), c.name)
    assert.deepEqual(input.subarray(used), hex(c.rest_hex), c.name)
  }
  assert.deepEqual([v.valid.length, v.invalid.length, v.decode_extra.length], [19, 10, 9])
})

test('frames encode as Go wrote them and parse back', () => {
  const cases = load('frames.json')
  for (const c of cases) {
    const frame = frameOf(c, hex(c.data_hex))
    const encoded = wire.encodeFrame(frame)
    assert.deepEqual(encoded, hex(c.wire_hex), c.name)
    const parsed = wire.parseFrame(encoded)
    assert.equal(parsed.used, encoded.length, c.name)
    if (c.roundtrips) {
      assert.deepEqual(parsed.frame, frame, c.name)
    } else {
      const p = c.parsed
      const { kind, done, control, stream, message, data } = parsed.frame
      assert.deepEqual([kind, done, control, stream, message, data.length],
        [p.kind, p.done, p.control, BigInt(p.stream), BigInt(p.message), p.data_len], c.name)
    }
  }
  assert.equal(cases.length, 56)
})

test('frames parse as Go parsed them', () => {
  const cases = load('frames_parse.json')
  for (const c of cases) {
    const input = hex(c.input_hex)
    let parsed
    const error = decodeError(() => { parsed = wire.parseFrame(input) })
    if (error !== null) {
      assert.ok(!c.ok, c.name)
      assert.equal(error, c.error, c.name)
    } else if (parsed === null) {
      assert.ok(!c.ok && c.error === null, `${c.name}: incomplete`)
      assert.deepEqual(input, hex(c.rest_hex), c.name)
    } else {
      assert.ok(c.ok, `${c.name}: parsed but Go did not`)
      assert.deepEqual(parsed.frame, frameOf({ ...c.frame, done: c.frame.done }, hex(c.frame.data_hex)), c.name)
      assert.deepEqual(input.subarray(parsed.used), hex(c.rest_hex), c.name)
    }
  }
  assert.equal(cases.length, 24)
})

/** Feeds `input` to a reader `chunk` bytes at a time: the packets, and how the stream ended. */
function readAll (maxBufferSize, input, chunk) {
  const reader = wire.PacketReader.go(maxBufferSize)
  const packets = []
  for (let at = 0; at < Math.max(input.length, 1); at += Math.max(chunk, 1)) {
    reader.feed(input.subarray(at, at + Math.max(chunk, 1)))
    for (;;) {
      let packet
      const error = decodeError(() => { packet = reader.read() })
      if (error !== null) return { packets, error }
      if (packet === null) break
      packets.push(packet)
    }
  }
  return { packets, error: 'EOF' }
}

test('the packet reader reads as Go read, whole and byte by byte', () => {
  const cases = load('reader.json')
  const expected = (packets, error) => ({ packets: packets.map((p) => packetOf(p, hex(p.data_hex))), error })
  for (const c of cases) {
    const input = hex(c.input_hex)
    const whole = readAll(c.max_buffer_size, input, input.length)
    const bytewise = readAll(c.max_buffer_size, input, 1)
    assert.deepEqual(whole, bytewise, `${c.name}: the result depends on chunking`)
    const goWhole = expected(c.packets, c.error)
    if (c.chunking_sensitive) {
      const goBytewise = expected(c.one_byte_reader.packets, c.one_byte_reader.error)
      assert.ok(
        isDeepStrictEqual(whole, goWhole) || isDeepStrictEqual(whole, goBytewise),
        `${c.name}: ${JSON.stringify(whole.error)}`
      )
    } else {
      assert.deepEqual(whole, goWhole, c.name)
    }
  }
  assert.equal(cases.length, 44)
})

const { isDeepStrictEqual } = require('node:util')

/** Go's split size: 0 the default, negative never. */
const goSplit = (n) => (n === 0 ? undefined : n < 0 ? Infinity : n)

test('packets split into frames as Go split them', () => {
  const cases = load('split.json')
  for (const c of cases) {
    const p = c.packet
    const data = p.data_hex !== null && p.data_hex !== undefined ? hex(p.data_hex) : pattern(p.data_len)
    assert.equal(data.length, p.data_len, c.name)
    const packet = packetOf(p, data)
    const frames = wire.packetFrames(packet, goSplit(c.split_size))
    assert.equal(frames.length, c.frame_count, c.name)
    // The run-length form covers every case; compared field by field, as some cases have
    // hundreds of thousands of frames.
    let at = 0
    for (const run of c.frame_runs) {
      for (let k = 0; k < run.count; k++, at++) {
        const start = run.first_data_offset + k * run.data_len
        const f = frames[at]
        const same = f.kind === run.kind && f.done === run.done && f.control === run.control &&
          f.stream === BigInt(run.stream) && f.message === BigInt(run.message) &&
          f.data.equals(data.subarray(start, start + run.data_len))
        if (!same) assert.fail(`${c.name}: frame ${at} differs`)
      }
    }
    assert.equal(at, frames.length, c.name)
    const framed = Buffer.concat(frames.map((f) => wire.encodeFrame(f)))
    assert.ok(wire.encodePacket(packet, goSplit(c.split_size)).equals(framed), c.name)
  }
  assert.equal(cases.length, 36)
})

test('error bodies', () => {
  const e = load('errors.json')
  for (const c of e.encode) {
    const encoded = wire.encodeError({ code: BigInt(c.code), message: hex(c.message_hex) })
    assert.deepEqual(encoded, hex(c.wire_hex), c.name)
  }
  for (const c of e.decode) {
    const body = wire.decodeError(hex(c.wire_hex))
    assert.equal(body.code, BigInt(c.code), c.name)
    assert.deepEqual(body.message, hex(c.message_hex), c.name)
  }
  assert.deepEqual([e.encode.length, e.decode.length], [16, 13])
})

test('metadata', () => {
  const m = load('metadata.json')
  const entries = (pairs) => pairs.map(([k, v]) => ({ key: hex(k), value: hex(v) }))
  for (const c of m.encode) {
    assert.deepEqual(wire.encodeMetadata(entries(c.pairs_hex)), hex(c.hex), c.name)
  }
  for (const c of m.decode) {
    let decoded
    const error = decodeError(() => { decoded = wire.decodeMetadata(hex(c.input_hex)) })
    if (error === null) {
      assert.ok(c.ok, `${c.name}: decoded but Go failed`)
      assert.deepEqual(decoded, entries(c.pairs_hex), c.name)
    } else {
      assert.ok(!c.ok, `${c.name}: ${error}`)
      assert.equal(error, c.error, c.name)
    }
  }
  assert.deepEqual([m.encode.length, m.decode.length], [14, 25])
})

test('transcripts decode frame by frame and packet by packet, and re-encode exactly', () => {
  const transcripts = load('transcripts.json')
  for (const t of transcripts) {
    for (const [direction, wireHex, summary] of [
      ['client_to_server', t.client_to_server_hex, t.client_to_server_frames],
      ['server_to_client', t.server_to_client_hex, t.server_to_client_frames]
    ]) {
      const what = `${t.name} ${direction}`
      const encoded = hex(wireHex)
      let rest = encoded
      let count = 0
      for (let parsed; (parsed = wire.parseFrame(rest)) !== null; count++) {
        const want = summary[count]
        assert.ok(want !== undefined, `${what}: extra frame`)
        const { kind, done, control, stream, message, data } = parsed.frame
        assert.deepEqual([kind, done, control, stream, message, data.length],
          [want.kind, want.done, want.control, BigInt(want.stream), BigInt(want.message), want.data_len], what)
        if (want.data_hex !== null && want.data_hex !== undefined) assert.deepEqual(data, hex(want.data_hex), what)
        rest = rest.subarray(parsed.used)
      }
      assert.ok(rest.length === 0 && count === summary.length, `${what}: trailing bytes`)

      const reader = new wire.PacketReader()
      reader.feed(encoded)
      const reencoded = []
      for (let packet; (packet = reader.read()) !== null;) reencoded.push(wire.encodePacket(packet))
      assert.equal(reader.bufferedLen(), 0, `${what}: bytes left undecoded`)
      assert.deepEqual(Buffer.concat(reencoded), encoded, `${what}: re-encoding differs`)
    }
  }
  assert.equal(transcripts.length, 13)
})
