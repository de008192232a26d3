'use strict'
// frontier: spans, timestamps, the frontier, checkpoints and the policy on a virtual clock.

const assert = require('node:assert/strict')
const { test } = require('node:test')
const { frontier } = require('weir')
const { CheckpointPolicy, Checkpoint, Frontier, Span, Timestamp } = frontier

const SECOND = 1_000_000_000n
const secs = (s) => new Timestamp(BigInt(s) * SECOND)
const span = (a, b) => new Span(Buffer.from(a), Buffer.from(b))
const same = (a, b) => a !== null && b !== null && a.equals(b)

test('spans and timestamps', () => {
  const s = span('a', 'm')
  assert.deepEqual([s.start.toString(), s.end.toString()], ['a', 'm'])
  assert.ok(s.equals(span('a', 'm')) && !s.equals(span('a', 'n')))
  assert.equal(new Timestamp(5n).compare(new Timestamp(5n, 1)), -1)
  assert.equal(new Timestamp(6n).compare(new Timestamp(5n, 1)), 1)
  assert.equal(new Timestamp(5n, 0).compare(new Timestamp(5n)), 0)
  const t = new Timestamp(-(1n << 62n), 2)
  assert.deepEqual([t.wallNs, t.logical], [-(1n << 62n), 2])
  assert.throws(() => span('b', 'a'), { code: 'WEIR_USAGE' })
  assert.throws(() => new Timestamp(1n << 63n), { code: 'WEIR_USAGE' })
})

test('forward moves the frontier once every span has', () => {
  const f = new Frontier([span('a', 'm'), span('m', 'z')], secs(1))
  assert.ok(same(f.frontier(), secs(1)))
  assert.equal(f.forward(span('a', 'm'), secs(3)), false)
  assert.ok(same(f.frontier(), secs(1)))
  assert.equal(f.forward(span('m', 'z'), secs(2)), true)
  assert.ok(same(f.frontier(), secs(2)))
  assert.ok(same(f.get(Buffer.from('b')), secs(3)))
  assert.equal(f.get(Buffer.from('zz')), null)
  const entries = f.entries().map((e) => [e.span.start.toString(), e.span.end.toString(), e.ts.wallNs])
  assert.deepEqual(entries, [['a', 'm', 3n * SECOND], ['m', 'z', 2n * SECOND]])
  assert.equal(new Frontier([], secs(1)).frontier(), null)
})

test('a checkpoint goes to bytes and back, and restores the spans ahead', () => {
  const f = new Frontier([span('a', 'm'), span('m', 'z')], secs(1))
  f.forward(span('a', 'c'), secs(9))
  f.forward(span('p', 'q'), secs(5))
  const checkpoint = f.checkpoint(1 << 20)
  const groups = checkpoint.groups.map((g) => [g.ts.wallNs, g.spans.map((s) => `${s.start}-${s.end}`)])
  assert.deepEqual(groups, [[9n * SECOND, ['a-c']], [5n * SECOND, ['p-q']]])
  assert.deepEqual(f.checkpoint().toBytes(), checkpoint.toBytes(), 'the default budget is 1 MiB')
  assert.equal(f.checkpoint(2).omittedSpans, 1, 'a 2-byte budget leaves p-q out')
  const restored = Checkpoint.fromBytes(checkpoint.toBytes())
  const fresh = new Frontier([span('a', 'z')], secs(1))
  assert.equal(fresh.restore(restored), false)
  assert.ok(same(fresh.get(Buffer.from('b')), secs(9)))
  assert.ok(same(fresh.get(Buffer.from('p')), secs(5)))
  assert.ok(same(fresh.get(Buffer.from('d')), secs(1)))
  // An inverted span in otherwise good bytes is refused like a malformed document.
  const inverted = checkpoint.toBytes().toString().replace('"start":[97],"end":[99]', '"start":[99],"end":[97]')
  assert.notEqual(inverted, checkpoint.toBytes().toString())
  assert.throws(() => Checkpoint.fromBytes(Buffer.from(inverted)), { code: 'WEIR_USAGE', message: /span/ })
  assert.throws(() => Checkpoint.fromBytes(Buffer.from('nope')), { code: 'WEIR_USAGE' })
})

test('the policy persists the high water once per interval', () => {
  const policy = new CheckpointPolicy(0n, new Frontier([span('a', 'z')], secs(0)), { intervalNs: 10n * SECOND })
  const first = policy.pollOutput()
  assert.equal(first.type, 'persistCheckpoint')
  assert.deepEqual(first.checkpoint.groups, [])
  assert.equal(policy.metrics().clearedCheckpoints, 1n)
  assert.equal(policy.pollOutput(), null)

  assert.equal(policy.handleResolved(1n * SECOND, span('a', 'z'), secs(5)), true)
  const high = policy.pollOutput()
  assert.equal(high.type, 'persistHighWater')
  assert.ok(same(high.ts, secs(5)))
  assert.equal(policy.pollOutput(), null)

  policy.handleResolved(2n * SECOND, span('a', 'z'), secs(6))
  assert.equal(policy.pollOutput(), null)
  assert.equal(policy.pollTimeout(), 11n * SECOND)
  policy.handleTimeout(11n * SECOND)
  const later = policy.pollOutput()
  assert.equal(later.type, 'persistHighWater')
  assert.ok(same(later.ts, secs(6)))
  assert.deepEqual([policy.metrics().highWaterPersists, policy.metrics().resolvedSpans], [2n, 2n])
})

test('the policy checkpoints the spans ahead while the frontier lags', () => {
  const f = new Frontier([span('a', 'm'), span('m', 'z')], secs(0))
  const policy = new CheckpointPolicy(0n, f, { intervalNs: 10n * SECOND, lagThresholdNs: 5n * SECOND })
  assert.equal(policy.pollOutput().type, 'persistCheckpoint')
  assert.equal(policy.pollOutput(), null)
  policy.handleResolved(1n * SECOND, span('a', 'm'), secs(20))
  const output = policy.pollOutput()
  assert.equal(output.type, 'persistCheckpoint')
  const [group] = output.checkpoint.groups
  assert.ok(same(group.ts, secs(20)) && group.spans.length === 1 && group.spans[0].equals(span('a', 'm')))
  assert.equal(output.checkpoint.omittedSpans, 0)
  assert.equal(policy.metrics().checkpoints, 1n)
})
