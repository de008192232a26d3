'use strict'
// flow: admission with token pools on a virtual clock.

const assert = require('node:assert/strict')
const { test } = require('node:test')
const { flow } = require('weir')

const MIB = 1n << 20n
const stream = (store) => ({ tenant: 1n, store })
const at = (index) => ({ term: 1n, index })

test('a write is admitted, bound and returned as the replicas admit it', () => {
  const fc = new flow.FlowControl()
  const replicas = [stream(1n), stream(2n), stream(3n)]
  for (const s of replicas) fc.connectStream(0n, s, at(0n))
  const targets = { replicas: replicas.map((s, i) => ({ stream: s, mustHave: i === 0 })), quorum: 2 }
  fc.admit(0n, 1n, 'regular', MIB, targets)
  const admitted = fc.pollOutput()
  assert.equal(admitted.type, 'admitted')
  assert.equal(admitted.id, 1n)
  assert.equal(admitted.grant.class, 'regular')
  assert.equal(admitted.grant.charged.length, 3)
  assert.equal(fc.pollOutput(), null)
  assert.equal(fc.available(replicas[1], 'regular'), 15 * 2 ** 20)
  assert.equal(fc.unbound(), 1)
  assert.equal(fc.tracked(replicas[0], 'regular'), MIB)
  fc.bind(0n, 1n, at(1n))
  for (const s of replicas) {
    assert.equal(fc.handleAdmitted(0n, s, 'regular', at(1n)), MIB)
    assert.equal(fc.handleAdmitted(0n, s, 'regular', at(1n)), 0n)
  }
  assert.equal(fc.available(replicas[1], 'regular'), 16 * 2 ** 20)
  assert.equal(fc.checkInvariants(), null)
  assert.equal(fc.tracked(replicas[0], 'regular'), 0n)
  assert.equal(fc.isConnected(replicas[0]), true)
  assert.equal(fc.isConnected(stream(9n)), null)
  assert.deepEqual([fc.waiting(), fc.waitingBytes(), fc.unbound()], [0, 0n, 0])
  const metrics = fc.metrics()
  assert.equal(metrics.regular.tokensDeducted, 3n * MIB)
  assert.equal(metrics.regular.tokensReturned, 3n * MIB)
  assert.equal(metrics.regular.requestsAdmitted, 1n)
  assert.equal(metrics.regular.waitDurationNs.count, 1n)
  assert.equal(metrics.elastic.streamCount, 3n)
})

test('a request waits when a quorum has no tokens, and is rejected at its deadline', () => {
  const fc = new flow.FlowControl({ regularTokens: MIB, maxWaitNs: 1000n })
  fc.connectStream(0n, stream(1n), at(0n))
  const targets = { replicas: [{ stream: stream(1n) }], quorum: 1 }
  fc.admit(0n, 1n, 'regular', MIB, targets)
  assert.equal(fc.pollOutput().type, 'admitted')
  fc.admit(0n, 2n, 'regular', 1n, targets)
  assert.deepEqual(fc.pollOutput(), { type: 'queued', id: 2n, deadline: 1000n })
  assert.equal(fc.pollTimeout(), 1000n)
  fc.handleTimeout(1000n)
  assert.deepEqual(fc.pollOutput(), { type: 'rejected', id: 2n, reason: 'timedOut' })
})

test('misuse throws WEIR_USAGE', () => {
  const fc = new flow.FlowControl()
  assert.throws(() => fc.disconnectStream(0n, stream(9n)), { code: 'WEIR_USAGE' })
  assert.throws(() => fc.admit(0n, 1n, 'urgent', 1n, { replicas: [], quorum: 0 }), { code: 'WEIR_USAGE' })
  fc.connectStream(0n, stream(1n), at(0n))
  assert.throws(() => fc.connectStream(0n, stream(1n), at(0n)), { code: 'WEIR_USAGE' })
})
