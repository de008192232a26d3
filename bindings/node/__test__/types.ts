// The public API as a TypeScript user writes it, type-checked with `tsc --noEmit --strict`
// (npm run typecheck): the generated index.d.ts and the hand-written net.d.ts.

import { flow, frontier, mux, transfer, wire } from 'weir'
import { connect, IncomingStream, RemoteError, Router, serve } from 'weir/net'

/** Moves every transmit of `from` into `to`, returning the other outputs. */
function pump (now: bigint, from: mux.Session, to: mux.Session): mux.Output[] {
  const others: mux.Output[] = []
  for (let output = from.pollOutput(); output !== null; output = from.pollOutput()) {
    switch (output.type) {
      case 'transmit':
        to.handleInput(now, output.data)
        from.handleWritten(output.data.length)
        break
      case 'opened':
        others.push(output)
        console.log(output.rpc, output.metadata['k'], output.stream + 1n)
        break
      case 'remoteError':
        console.log(output.code, output.message)
        break
      case 'closed':
        console.log(output.reason, output.isLimit)
        break
      default:
        others.push(output)
    }
  }
  return others
}

function readAll (session: mux.Session, stream: bigint): string[] {
  const messages: string[] = []
  for (;;) {
    const result = session.read(stream)
    if (result === null) return messages
    if (Buffer.isBuffer(result)) {
      messages.push(result.toString())
      continue
    }
    switch (result.type) {
      case 'eof':
        return messages
      case 'failed':
        throw new RemoteError(result.code, result.message)
      case 'canceled':
        throw new Error('canceled')
    }
  }
}

const config: mux.Config = mux.Config.mux({ maxUnwritten: null, idleTimeoutNs: 5_000_000_000n })
const mode: 'compat' | 'mux' = config.mode
const client = new mux.Session('client', config)
const server = new mux.Session('server', new mux.Config({ mode }))
const stream: bigint = client.openStream(process.hrtime.bigint(), '/a', { k: 'v' })
client.send(0n, stream, new Uint8Array([1, 2, 3]))
pump(0n, client, server)
readAll(server, stream)
const deadline: bigint | null = server.pollTimeout()
const metrics: mux.Metrics = client.metrics()
const sent: bigint = metrics.bytesSent

const frame: wire.Frame = { kind: 2, done: true, control: false, stream: 1n, message: 1n, data: Buffer.from('x') }
const parsed: wire.ParsedFrame | null = wire.parseFrame(wire.encodeFrame(frame))
const reader = wire.PacketReader.go(0)
const split: number = wire.DEFAULT_SPLIT_SIZE + new wire.PacketReader(wire.DEFAULT_MAX_PACKET_LEN).bufferedLen()
reader.feed(Buffer.alloc(0))
const packet: wire.Packet | null = reader.read()

const span = new frontier.Span(Buffer.from('a'), Buffer.from('z'))
const front = new frontier.Frontier([span], new frontier.Timestamp(1n))
const advanced: boolean = front.forward(span, new frontier.Timestamp(2n, 1))
const checkpoint = frontier.Checkpoint.fromBytes(front.checkpoint(1024).toBytes())
const policy = new frontier.CheckpointPolicy(0n, front, { intervalNs: 1n })
const decision = policy.pollOutput()
if (decision?.type === 'persistHighWater') console.log(decision.ts.wallNs)
if (decision?.type === 'persistCheckpoint') console.log(decision.checkpoint.omittedSpans)

const fc = new flow.FlowControl({ regularTokens: 1n << 20n })
fc.connectStream(0n, { tenant: 1n, store: 1n }, { term: 1n, index: 0n })
fc.admit(0n, 1n, 'regular', 10n, { replicas: [{ stream: { tenant: 1n, store: 1n }, mustHave: true }], quorum: 1 })
const admission = fc.pollOutput()
if (admission?.type === 'admitted') console.log(admission.grant.charged.length)
if (admission?.type === 'rejected') console.log(admission.reason)
const waited: mux.Histogram = fc.metrics().regular.waitDurationNs
const debt: number = fc.metrics().elastic.tokensAvailable

const machine = new transfer.Machine(0n, { dialect: 'postgres', reuseOldServer: true })
machine.handleClientInput(0n, Buffer.alloc(0))
for (let output = machine.pollOutput(); output !== null; output = machine.pollOutput()) {
  if (output.type === 'transmit') console.log(output.to === 'client' ? 'client' : output.to + 1n, output.source, output.data.length)
  if (output.type === 'dialNewServer') console.log(output.params.map(([name, value]) => `${name}=${value}`))
  if (output.type === 'outcome' && output.outcome.result !== 'success') console.log(output.outcome.failure)
}

const frontend = new transfer.Frontend(0n, { loginTimeoutNs: 1n })
frontend.handleInput(0n, transfer.buildStartupMessage([['user', 'u']]))
const first = frontend.pollOutput()
if (first?.type === 'startup') machine.handleClientInput(0n, first.data)
if (first?.type === 'cancel') console.log(transfer.buildCancelRequest(first.key).length)
const reset = new transfer.Reset(0n, { timeoutNs: 1n })
const resetOutput = reset.pollOutput()
if (resetOutput?.type === 'failed') console.log(resetOutput.reason)

async function main (): Promise<void> {
  const router = new Router()
    .unary('/t.T/Echo', async (request) => request.message)
    .unary('/t.T/Fail', () => { throw new RemoteError(5n, 'no') })
    .stream('/t.T/Bidi', async (incoming: IncomingStream) => {
      console.log(incoming.rpc, incoming.metadata)
      for await (const message of incoming) await incoming.send(message)
    })
  const listener = await serve(router, { host: '127.0.0.1', port: 0, mode: 'mux' })
  const caller = await connect({ port: listener.port, mode: 'mux' })
  const reply: Buffer = await caller.call('/t.T/Echo', 'hi', {
    metadata: { k: 'v' },
    signal: AbortSignal.timeout(1000),
    timeout: 500
  })
  const bidi = caller.open('/t.T/Bidi')
  await bidi.send(Buffer.from('x'))
  await bidi.closeSend()
  for await (const message of bidi) console.log(message.byteLength)
  try {
    await caller.call('/t.T/Fail', '')
  } catch (error) {
    if (error instanceof RemoteError) console.log(error.drpcCode + 1n, error.code)
  }
  console.log(reply.length, caller.metrics().streamsOpened)
  await caller.close()
  await listener.close()
}

export { main, deadline, sent, parsed, packet, advanced, checkpoint, split, waited, debt }
