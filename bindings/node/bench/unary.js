'use strict'
// make bench-node: unary calls per second on one connection, weir/net (mux mode) beside
// @grpc/grpc-js in the same run, with 1 and with 64 concurrent callers; then DRPC frames decoded
// per second through the binding's PacketReader. The server runs in a child process, the client
// here. WEIR_BENCH_QUICK=1 measures each case for 2 s (else 10 s). Ends with name=value lines.

const { fork } = require('node:child_process')
const grpc = require('@grpc/grpc-js')
const { wire } = require('weir')
const { connect, serve, Router } = require('weir/net')

const SECONDS = process.env.WEIR_BENCH_QUICK === '1' ? 2 : 10
const WARMUP_MS = 300
const RPC = '/bench.Bench/Echo'
const MESSAGE = Buffer.alloc(64, 0x61)
const raw = { serialize: (b) => b, deserialize: (b) => b }
const definition = { Echo: { path: RPC, requestStream: false, responseStream: false, requestSerialize: raw.serialize, requestDeserialize: raw.deserialize, responseSerialize: raw.serialize, responseDeserialize: raw.deserialize } }

async function childServer () {
  const weir = await serve(new Router().unary(RPC, (request) => request.message), { mode: 'mux' })
  const server = new grpc.Server()
  server.addService(definition, { Echo: (call, callback) => callback(null, call.request) })
  const grpcPort = await new Promise((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (error, port) => (error ? reject(error) : resolve(port))))
  process.send({ weirPort: weir.port, grpcPort })
}

/** Calls `call` from `callers` loops at once for SECONDS after a warmup; returns calls/s. */
async function measure (call, callers) {
  let counting = false
  let count = 0
  let running = true
  const loops = Array.from({ length: callers }, async () => {
    while (running) {
      await call()
      if (counting) count++
    }
  })
  await new Promise((resolve) => setTimeout(resolve, WARMUP_MS))
  counting = true
  const started = process.hrtime.bigint()
  await new Promise((resolve) => setTimeout(resolve, SECONDS * 1000))
  counting = false
  const elapsed = Number(process.hrtime.bigint() - started) / 1e9
  const total = count
  running = false
  await Promise.all(loops)
  return total / elapsed
}

function framesDecodedPerSecond () {
  // 4096 single-frame Message packets of 64 bytes, as a peer would send them, read over and over.
  const packets = []
  for (let i = 1n; i <= 4096n; i++) {
    packets.push(wire.encodePacket({ kind: 2, control: false, stream: i, message: 1n, data: MESSAGE }))
  }
  const bytes = Buffer.concat(packets)
  let frames = 0
  const started = process.hrtime.bigint()
  const until = started + BigInt(SECONDS) * 1_000_000_000n
  while (process.hrtime.bigint() < until) {
    const reader = new wire.PacketReader()
    reader.feed(bytes)
    frames += reader.drain()
  }
  return frames / (Number(process.hrtime.bigint() - started) / 1e9)
}

async function main () {
  const child = fork(__filename, ['serve'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  const { weirPort, grpcPort } = await new Promise((resolve) => child.once('message', resolve))
  const weir = await connect({ port: weirPort, mode: 'mux' })
  const Client = grpc.makeGenericClientConstructor(definition, 'Bench')
  const client = new Client(`127.0.0.1:${grpcPort}`, grpc.credentials.createInsecure())
  const grpcCall = () => new Promise((resolve, reject) =>
    client.Echo(MESSAGE, (error, reply) => (error ? reject(error) : resolve(reply))))
  const weirCall = () => weir.call(RPC, MESSAGE)

  const results = {}
  for (const callers of [1, 64]) {
    results[`node_weir_unary${callers}_calls_per_sec`] = await measure(weirCall, callers)
    results[`node_grpc_js_unary${callers}_calls_per_sec`] = await measure(grpcCall, callers)
  }
  await weir.close()
  client.close()
  child.kill()

  results.node_unary_ratio_vs_grpc_js = results.node_weir_unary64_calls_per_sec / results.node_grpc_js_unary64_calls_per_sec
  results.node_unary1_ratio_vs_grpc_js = results.node_weir_unary1_calls_per_sec / results.node_grpc_js_unary1_calls_per_sec
  results.node_frames_decoded_per_sec = framesDecodedPerSecond()
  for (const [name, value] of Object.entries(results)) {
    console.log(`${name}=${name.includes('ratio') ? value.toFixed(2) : Math.round(value)}`)
  }
}

if (process.argv[2] === 'serve') {
  childServer()
} else {
  main().catch((error) => {
    console.error(error)
    process.exit(1)
  })
}
