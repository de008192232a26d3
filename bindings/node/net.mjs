// weir/net as an ES module: the same exports as net.js.
import net from './net.js'

export const { connect, serve, Router, RemoteError, Client, Server, Stream, IncomingStream } = net
export default net
