/// <reference types="node" />
// Types of weir/net (net.js), written by hand; the native module's are in index.d.ts.

import type { mux } from './index'

/** Which DRPC rules a connection plays by: `compat` talks to stock Go DRPC, `mux` to weir. */
export type Mode = 'compat' | 'mux'

/** What a connection or a server is set up with. */
export interface SessionOptions {
  /** The rules, when `config` is not given (default `'compat'`). */
  mode?: Mode
  /** A whole session configuration (its `mode` wins over `mode`). */
  config?: mux.Config
}

/** Where to connect or listen: TCP (`host`, `port`) or a Unix socket (`path`). */
export interface AddressOptions {
  /** Default `'127.0.0.1'`. */
  host?: string
  /** TCP port; 0 to listen on any free one. */
  port?: number
  /** A Unix socket's path, instead of host and port. */
  path?: string
}

/** Options of one call or stream. */
export interface CallOptions {
  /** Sent with the Invoke. */
  metadata?: Record<string, string>
  /** Aborting it cancels the stream (the peer sees a Cancel) and rejects with its reason. */
  signal?: AbortSignal
  /** Milliseconds; past them the stream is canceled and the call rejects with a `TimeoutError`. */
  timeout?: number
}

/** A message: Buffers and Uint8Arrays are sent as they are, strings as UTF-8. */
export type Message = Buffer | Uint8Array | string

/** Thrown with a DRPC error the peer sent, and thrown by a handler to send one. */
export declare class RemoteError extends Error {
  constructor(drpcCode: bigint | number, message: string)
  readonly code: 'WEIR_REMOTE'
  /** The DRPC error code. */
  readonly drpcCode: bigint
}

/** One stream: an async iterable of the peer's messages, with `send()` and `closeSend()`. */
export declare class Stream implements AsyncIterable<Buffer> {
  /** Resolves once the stream is open (rejects if it could not be). */
  readonly ready: Promise<void>
  /** The stream's id, once open. */
  readonly id: bigint | undefined
  /** Whether the connection under the stream has failed or closed. */
  readonly connectionFailed: boolean
  /** Aborted, with the reason, once the stream is canceled (by either side) or its connection fails. */
  readonly signal: AbortSignal
  /** The next message, or `null` once the peer has sent everything. */
  read(): Promise<Buffer | null>
  /** Queues a message; waits while the stream's send queue is full. */
  send(data: Message): Promise<void>
  /** This side sends no more messages. */
  closeSend(): Promise<void>
  /** Fails the stream with a DRPC error for the peer. */
  sendError(code: bigint | number, message: string): Promise<void>
  /** Cancels the stream: the peer sees a Cancel; reads and sends here fail with `reason`. */
  cancel(reason?: unknown): Promise<void>
  /** This side reads no more: unread messages are dropped (nothing is sent), and the call's
   * signal and timeout stop watching it. */
  release(): void
  [Symbol.asyncIterator](): AsyncIterator<Buffer>
}

/** The stream a handler serves. */
export declare class IncomingStream extends Stream {
  /** The rpc the peer called. */
  readonly rpc: string
  /** The metadata the peer sent with the call. */
  readonly metadata: Record<string, string>
}

/** What a unary handler gets. */
export interface Request {
  readonly rpc: string
  readonly message: Buffer
  readonly metadata: Record<string, string>
}

/** A DRPC client on one connection. */
export declare class Client {
  /** Calls a unary rpc; resolves with the reply. */
  call(rpc: string, data: Message, options?: CallOptions): Promise<Buffer>
  /** Opens a stream calling `rpc` (compat mode: once the previous stream finished). */
  open(rpc: string, options?: CallOptions): Stream
  /** The session's counters. */
  metrics(): mux.Metrics
  /** Closes the connection; calls still open fail with `WEIR_CLOSED`. */
  close(): Promise<void>
}

/** The rpcs a server answers. */
export declare class Router {
  constructor()
  /** Answers `rpc` with what `handler` resolves to (nothing: an empty message). */
  unary(rpc: string, handler: (request: Request) => Promise<Message | void> | Message | void): this
  /** Serves `rpc` with `handler`; the stream's send side closes when it returns. */
  stream(rpc: string, handler: (stream: IncomingStream) => Promise<void> | void): this
}

/** A listening DRPC server. */
export declare class Server {
  /** The TCP port listened on (`undefined` on a Unix socket). */
  readonly port: number | undefined
  /** The listening address, as `net.Server.address()` gives it. */
  address(): ReturnType<import('node:net').Server['address']>
  /** Stops listening and closes every connection. */
  close(): Promise<void>
}

export interface ConnectOptions extends SessionOptions, AddressOptions {}

export interface ServeOptions extends SessionOptions, AddressOptions {
  /** Connections served at once; one past it is closed as soon as it is accepted (default 10000). */
  maxConnections?: number
  /** Called with a handler's error that is not a `RemoteError` (default: `console.error`). */
  onError?: (error: unknown, stream: IncomingStream) => void
}

/** Connects to a DRPC server. */
export declare function connect(options: ConnectOptions): Promise<Client>

/** Serves `router`. */
export declare function serve(router: Router, options?: ServeOptions): Promise<Server>
