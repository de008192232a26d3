'use strict'
// weir/net: a DRPC client and server over node:net (TCP or Unix sockets), in both modes.
//
// Each connection is one mux.Session from the native module; this file only moves bytes
// between the session and the socket, runs the session's timer, and turns its outputs into
// promises. Backpressure, both ways: bytes the socket takes while write() returns true count as
// written at once, the rest when 'drain' comes; while the session's queued output is at its
// bound (wantsInput() is false) the socket is paused, and so it is in compat mode (which has no
// credit) while the application leaves half of maxUnreadPerStream unread and no reader waits.
// A stream's send() waits while its queue in the session is full.

const net = require('node:net')
const { mux } = require('./index.js')

const now = () => process.hrtime.bigint()

function weirError (code, message) {
  const error = new Error(message)
  error.code = code
  return error
}

/** A DRPC error: thrown by a handler to send `drpcCode`, and rejected with when the peer sends one. */
class RemoteError extends Error {
  constructor (drpcCode, message) {
    super(message)
    this.name = 'RemoteError'
    this.code = 'WEIR_REMOTE'
    this.drpcCode = BigInt(drpcCode)
  }
}

function canceledError (message) {
  return new DOMException(message, 'AbortError')
}

function toBuffer (data) {
  if (Buffer.isBuffer(data)) return data
  if (data instanceof Uint8Array) return Buffer.from(data.buffer, data.byteOffset, data.byteLength)
  if (typeof data === 'string') return Buffer.from(data)
  throw weirError('WEIR_USAGE', 'a message must be a Buffer, a Uint8Array or a string')
}

function sessionConfig (options) {
  if (options.config !== undefined) return options.config
  const mode = options.mode ?? 'compat'
  if (mode === 'mux') return mux.Config.mux()
  if (mode === 'compat') return new mux.Config()
  throw weirError('WEIR_USAGE', `mode must be 'compat' or 'mux', not ${JSON.stringify(mode)}`)
}

/** One side of one stream: reads, sends and the end of it. */
class Stream {
  #conn
  #id
  #ready
  #failure = null
  #remote = null
  #wakers = []
  #onEnd
  #aborter = new AbortController()

  constructor (conn, ready, onEnd = () => {}) {
    this.#conn = conn
    this.#onEnd = onEnd
    this.#ready = ready.then((id) => {
      this.#id = id
      conn.streams.set(id, this)
      return id
    })
    // A stream whose opening failed reports it on its first use.
    this.#ready.catch(() => {})
  }

  /** Resolves once the stream is open. */
  get ready () {
    return this.#ready.then(() => {})
  }

  /** The stream's id (a bigint), once open. */
  get id () {
    return this.#id
  }

  /** Wakes the readers and senders of the stream to look again. */
  wake () {
    const wakers = this.#wakers
    this.#wakers = []
    for (const wake of wakers) wake()
  }

  /** Aborted, with the reason, once the stream is canceled (by either side) or its connection fails. */
  get signal () {
    return this.#aborter.signal
  }

  /** Fails every later read and send with `error`. */
  fail (error) {
    if (this.#failure === null) this.#failure = error
    this.#end()
    this.wake()
    this.#aborter.abort(error)
  }

  /** The peer failed the stream: sends throw `error` (reads deliver what came before it). */
  remoteFailed (error) {
    this.#remote = error
    this.wake()
  }

  #end () {
    const onEnd = this.#onEnd
    this.#onEnd = () => {}
    onEnd()
  }

  #wait (reading) {
    if (reading) this.#conn.readers++
    this.#conn.resumeIfWanted()
    return new Promise((resolve) => this.#wakers.push(resolve)).finally(() => {
      if (reading) this.#conn.readers--
    })
  }

  #check () {
    if (this.#failure !== null) throw this.#failure
    if (this.#conn.failure !== null) throw this.#conn.failure
  }

  /** The next message, or null once the peer has sent everything. */
  async read () {
    try {
      const message = await this.#read()
      if (message === null) this.#end()
      return message
    } catch (error) {
      this.#end()
      throw error
    }
  }

  async #read () {
    const id = await this.#ready
    for (;;) {
      this.#check()
      let result
      try {
        result = this.#conn.session.read(id)
      } catch (error) {
        this.#check()
        throw error
      }
      this.#conn.afterRead()
      if (result === null) {
        await this.#wait(true)
      } else if (Buffer.isBuffer(result)) {
        return result
      } else if (result.type === 'eof') {
        return null
      } else if (result.type === 'failed') {
        throw new RemoteError(result.code, result.message)
      } else {
        this.#check()
        throw canceledError('the stream was canceled')
      }
    }
  }

  /** Queues a message; waits while the stream's send queue is full. */
  async send (data) {
    const message = toBuffer(data)
    const id = await this.#ready
    for (;;) {
      this.#check()
      try {
        this.#conn.session.send(now(), id, message)
        this.#conn.schedulePump()
        return
      } catch (error) {
        this.#check()
        if (this.#remote !== null) throw this.#remote
        if (error.code !== 'WEIR_LIMIT') throw error
      }
      await this.#wait(false)
    }
  }

  /** This side sends no more messages. */
  async closeSend () {
    const id = await this.#ready
    this.#check()
    try {
      this.#conn.session.closeSend(now(), id)
    } catch (error) {
      if (this.#remote !== null) throw this.#remote
      throw error
    }
    this.#conn.schedulePump()
  }

  /** Fails the stream with a DRPC error `code` (a bigint) and `message` for the peer. */
  async sendError (code, message) {
    const id = await this.#ready
    this.#check()
    this.#conn.session.sendError(now(), id, BigInt(code), String(message))
    this.#conn.schedulePump()
  }

  /** Whether the connection under the stream has failed or closed. */
  get connectionFailed () {
    return this.#conn.failure !== null
  }

  /** Cancels the stream: the peer sees a Cancel, and reads and sends here fail with `reason`. */
  async cancel (reason = canceledError('the stream was canceled')) {
    const id = await this.#ready.catch(() => null)
    if (id === null) return
    this.fail(reason)
    if (this.#conn.failure !== null || !this.#conn.streams.has(id)) return
    try {
      this.#conn.session.cancel(now(), id)
    } catch (error) {
      if (error.code !== 'WEIR_USAGE') throw error
    }
    this.#conn.schedulePump()
  }

  /** This side reads no more: unread messages are dropped (nothing is sent), and the call's
   * signal and timeout stop watching it. */
  release () {
    this.#end()
    if (this.#id === undefined || this.#conn.failure !== null) return
    this.#conn.session.dropStream(this.#id)
    this.#conn.schedulePump()
  }

  async * [Symbol.asyncIterator] () {
    for (;;) {
      const message = await this.read()
      if (message === null) return
      yield message
    }
  }
}

/** A stream a handler serves: a Stream with the rpc and metadata it was opened with. */
class IncomingStream extends Stream {
  constructor (conn, id, rpc, metadata) {
    super(conn, Promise.resolve(id))
    /** The rpc the peer called. */
    this.rpc = rpc
    /** The metadata the peer sent with the call (an object of strings). */
    this.metadata = metadata
  }
}

/** A socket and the session on it. */
class Connection {
  constructor (socket, role, config) {
    this.socket = socket
    this.session = new mux.Session(role, config)
    this.compat = config.mode === 'compat'
    this.maxUnread = BigInt(Math.floor(config.maxUnreadPerStream / 2))
    this.streams = new Map()
    this.failure = null
    this.readers = 0
    this.unconfirmed = 0
    this.held = []
    this.paused = false
    this.timer = null
    this.deadline = null
    this.onOutput = null
    this.pumpScheduled = false
    this.closed = new Promise((resolve) => { this.markClosed = resolve })
    socket.setNoDelay(true)
    socket.on('data', (chunk) => this.input(chunk))
    socket.on('drain', () => this.drained())
    socket.on('error', (error) => this.fail(weirError('WEIR_CLOSED', `connection failed: ${error.message}`)))
    socket.on('close', () => {
      this.fail(weirError('WEIR_CLOSED', 'the connection is closed'))
      this.markClosed()
    })
    this.pump()
  }

  input (chunk) {
    if (this.failure !== null) return
    if (this.held.length > 0 || !this.session.wantsInput()) {
      this.held.push(chunk)
      this.pause()
      return
    }
    this.session.handleInput(now(), chunk)
    this.pump()
  }

  /** Feeds held chunks while the session takes them, and reads on when it wants more. */
  resumeIfWanted () {
    while (this.held.length > 0 && this.failure === null && this.session.wantsInput()) {
      this.session.handleInput(now(), this.held.shift())
      this.pump()
    }
    if (this.paused && this.wantsInput()) {
      this.paused = false
      this.socket.resume()
    }
  }

  wantsInput () {
    if (this.failure !== null || this.held.length > 0 || !this.session.wantsInput()) return false
    return !this.compat || this.readers > 0 || this.session.bufferedBytes() < this.maxUnread
  }

  pause () {
    if (!this.paused) {
      this.paused = true
      this.socket.pause()
    }
  }

  afterRead () {
    this.schedulePump()
    this.resumeIfWanted()
  }

  /** Pumps once, in a microtask: the calls many streams make meanwhile go out in one write. */
  schedulePump () {
    if (this.pumpScheduled) return
    this.pumpScheduled = true
    queueMicrotask(() => {
      this.pumpScheduled = false
      this.pump()
    })
  }

  drained () {
    if (this.unconfirmed > 0 && this.failure === null) {
      const n = this.unconfirmed
      this.unconfirmed = 0
      this.session.handleWritten(n)
      this.pump()
      this.resumeIfWanted()
    }
  }

  /** Handles every output of the session, then sets its timer. */
  pump () {
    if (this.failure !== null) return
    this.socket.cork()
    try {
      let output
      while ((output = this.session.pollOutput()) !== null) this.dispatch(output)
    } finally {
      this.socket.uncork()
    }
    if (this.held.length > 0 || !this.wantsInput()) {
      this.pause()
      // Writes this pump confirmed may have made room for the chunks held back.
      if (this.held.length > 0 && this.session.wantsInput()) queueMicrotask(() => this.resumeIfWanted())
    } else if (this.paused) {
      queueMicrotask(() => this.resumeIfWanted())
    }
    this.arm()
  }

  dispatch (output) {
    switch (output.type) {
      case 'transmit':
        if (this.socket.write(output.data) && this.unconfirmed === 0) {
          this.session.handleWritten(output.data.length)
        } else {
          this.unconfirmed += output.data.length
        }
        return
      case 'closed':
        this.fail(weirError('WEIR_REMOTE_PROTOCOL', `the peer broke the protocol: ${output.reason}`))
        this.socket.destroy()
        return
      case 'opened':
        this.onOutput?.(output)
        return
      case 'remoteCanceled':
        this.streams.get(output.stream)?.fail(canceledError('the peer canceled the stream'))
        return
      case 'remoteError':
        this.streams.get(output.stream)?.remoteFailed(new RemoteError(output.code, output.message))
        return
      case 'finished':
        this.streams.get(output.stream)?.wake()
        this.streams.delete(output.stream)
        this.onOutput?.(output)
        return
      default:
        this.streams.get(output.stream)?.wake()
    }
  }

  arm () {
    const deadline = this.failure === null ? this.session.pollTimeout() : null
    if (deadline === this.deadline) return
    clearTimeout(this.timer)
    this.deadline = deadline
    if (deadline === null) return
    const wait = Number((deadline - now()) / 1_000_000n) + 1
    this.timer = setTimeout(() => {
      this.deadline = null
      if (this.failure !== null) return
      this.session.handleTimeout(now())
      this.pump()
    }, Math.max(wait, 0))
    this.timer.unref()
  }

  fail (error) {
    if (this.failure !== null) return
    this.failure = error
    clearTimeout(this.timer)
    for (const stream of this.streams.values()) stream.fail(error)
    this.onOutput?.({ type: 'failed' })
  }

  close () {
    this.fail(weirError('WEIR_CLOSED', 'the connection is closed'))
    this.socket.destroy()
    return this.closed
  }
}

/** A DRPC client on one connection. */
class Client {
  #conn
  #openers = []

  constructor (socket, config) {
    this.#conn = new Connection(socket, 'client', config)
    this.#conn.onOutput = () => this.#retryOpens()
  }

  #retryOpens () {
    const openers = this.#openers
    this.#openers = []
    for (const retry of openers) retry()
  }

  /** Opens a stream once the session can take one (compat mode: once the last one finished). */
  async #open (rpc, metadata, cancelled) {
    const conn = this.#conn
    for (;;) {
      if (conn.failure !== null) throw conn.failure
      if (cancelled() !== null) throw cancelled()
      const busy = conn.compat && conn.session.activeStreams() > 0n
      if (!busy) {
        try {
          const id = conn.session.openStream(now(), rpc, metadata ?? {})
          conn.schedulePump()
          return id
        } catch (error) {
          if (error.code !== 'WEIR_LIMIT') throw error
        }
      }
      await new Promise((resolve) => this.#openers.push(resolve))
    }
  }

  /** Watches `signal` and `timeout` for `stream`: cancels it when either fires. */
  #guard (options, state) {
    const { signal, timeout } = options
    const stop = []
    const abort = (reason) => {
      if (state.reason !== null) return
      state.reason = reason
      state.stream?.cancel(reason)
      this.#retryOpens()
    }
    if (signal !== undefined) {
      if (signal.aborted) abort(signal.reason)
      const onAbort = () => abort(signal.reason)
      signal.addEventListener('abort', onAbort, { once: true })
      stop.push(() => signal.removeEventListener('abort', onAbort))
    }
    if (timeout !== undefined) {
      const timer = setTimeout(() => abort(new DOMException(`no reply within ${timeout} ms`, 'TimeoutError')), timeout)
      stop.push(() => clearTimeout(timer))
    }
    return () => stop.forEach((f) => f())
  }

  #stream (rpc, options) {
    const state = { reason: null, stream: null }
    const unguard = this.#guard(options, state)
    const opened = this.#open(rpc, options.metadata, () => state.reason)
    const stream = new Stream(this.#conn, opened, unguard)
    state.stream = stream
    if (state.reason !== null) stream.cancel(state.reason)
    return stream
  }

  /** Calls a unary rpc: resolves with the reply. */
  async call (rpc, data, options = {}) {
    const stream = this.#stream(rpc, options)
    try {
      await stream.send(data)
      await stream.closeSend()
      const reply = await stream.read()
      if (reply === null) {
        throw weirError('WEIR_REMOTE_PROTOCOL', `${rpc}: the server ended the stream without a reply`)
      }
      while ((await stream.read()) !== null);
      return reply
    } finally {
      stream.release()
    }
  }

  /** Opens a stream calling `rpc`: send(), closeSend(), read() or for await. */
  open (rpc, options = {}) {
    return this.#stream(rpc, options)
  }

  /** The session's counters. */
  metrics () {
    return this.#conn.session.metrics()
  }

  /** Closes the connection; calls still open fail with WEIR_CLOSED. */
  async close () {
    await this.#conn.close()
  }
}

function connectOptions (options) {
  if (options.path !== undefined) return { path: options.path }
  if (options.port === undefined) throw weirError('WEIR_USAGE', 'connect needs a port or a path')
  return { host: options.host ?? '127.0.0.1', port: options.port }
}

/** Connects to a DRPC server over TCP (`host`, `port`) or a Unix socket (`path`). */
async function connect (options) {
  const config = sessionConfig(options)
  return new Promise((resolve, reject) => {
    const socket = net.connect(connectOptions(options))
    socket.once('error', reject)
    socket.once('connect', () => {
      socket.off('error', reject)
      resolve(new Client(socket, config))
    })
  })
}

/** The rpcs a server answers. */
class Router {
  #routes = new Map()

  /** Answers `rpc` with `handler(request)`: `request.message`, `request.metadata`. */
  unary (rpc, handler) {
    this.#routes.set(rpc, { unary: true, handler })
    return this
  }

  /** Serves `rpc` with `handler(stream)`: the stream ends when the handler returns. */
  stream (rpc, handler) {
    this.#routes.set(rpc, { unary: false, handler })
    return this
  }

  route (rpc) {
    return this.#routes.get(rpc)
  }
}

async function runHandler (route, stream, onError) {
  try {
    if (route.unary) {
      const message = await stream.read()
      if (message === null) throw new RemoteError(0, 'the request has no message')
      const reply = await route.handler({ message, metadata: stream.metadata, rpc: stream.rpc })
      await stream.send(reply ?? Buffer.alloc(0))
    } else {
      await route.handler(stream)
    }
    await stream.closeSend()
  } catch (error) {
    await answerError(stream, error, onError)
  } finally {
    stream.release()
  }
}

async function answerError (stream, error, onError) {
  if (error?.name === 'AbortError' || stream.connectionFailed) return
  let code = 0n
  if (error?.code === 'WEIR_REMOTE' && typeof error.drpcCode === 'bigint') {
    code = error.drpcCode
  } else {
    onError(error, stream)
  }
  try {
    await stream.sendError(code, String(error?.message ?? error))
  } catch (sendError) {
    // The stream or the connection ended meanwhile: nobody is left to tell.
    const gone = sendError?.name === 'AbortError' || sendError?.code === 'WEIR_USAGE' ||
      sendError?.code === 'WEIR_CLOSED'
    if (!gone) onError(sendError, stream)
  }
}

/** A listening DRPC server. */
class Server {
  #listener
  #connections = new Set()

  constructor (listener, router, config, onError, maxConnections) {
    this.#listener = listener
    listener.on('connection', (socket) => {
      if (this.#connections.size >= maxConnections) {
        socket.destroy()
        return
      }
      const conn = new Connection(socket, 'server', config)
      this.#connections.add(conn)
      conn.closed.then(() => this.#connections.delete(conn))
      conn.onOutput = (output) => {
        if (output.type !== 'opened') return
        const stream = new IncomingStream(conn, output.stream, output.rpc, output.metadata)
        conn.streams.set(output.stream, stream)
        const route = router.route(output.rpc)
        if (route === undefined) {
          conn.session.sendError(now(), output.stream, 0n, `protocol error: unknown rpc: ${JSON.stringify(output.rpc)}`)
          conn.session.dropStream(output.stream)
          conn.schedulePump()
          return
        }
        runHandler(route, stream, onError)
      }
    })
  }

  /** The TCP port listened on (undefined on a Unix socket). */
  get port () {
    const address = this.#listener.address()
    return typeof address === 'object' && address !== null ? address.port : undefined
  }

  /** The listening address, as net.Server.address() gives it. */
  address () {
    return this.#listener.address()
  }

  /** Stops listening and closes every connection. */
  async close () {
    const stopped = new Promise((resolve) => this.#listener.close(() => resolve()))
    await Promise.all([...this.#connections].map((conn) => conn.close()))
    await stopped
  }
}

/** Serves `router` over TCP (`host`, `port`; port 0 picks one) or a Unix socket (`path`);
 * connections past `maxConnections` (default 10000) are closed as soon as they are accepted. */
async function serve (router, options = {}) {
  const config = sessionConfig(options)
  const onError = options.onError ?? ((error, stream) => console.error(`weir/net: ${stream.rpc}:`, error))
  return new Promise((resolve, reject) => {
    const listener = net.createServer({ pauseOnConnect: false })
    const server = new Server(listener, router, config, onError, options.maxConnections ?? 10_000)
    listener.once('error', reject)
    const target = options.path !== undefined
      ? { path: options.path }
      : { host: options.host ?? '127.0.0.1', port: options.port ?? 0 }
    listener.listen(target, () => {
      listener.off('error', reject)
      resolve(server)
    })
  })
}

module.exports = { connect, serve, Router, RemoteError, Client, Server, Stream, IncomingStream }
