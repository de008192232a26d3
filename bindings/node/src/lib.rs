//! The native module of the npm package `weir`: weir's machines for Node.
//!
//! ```js
//! const { mux } = require('weir')
//! const session = new mux.Session('client', mux.Config.mux())
//! const stream = session.openStream(process.hrtime.bigint(), '/echo.Echo/Unary', { k: 'v' })
//! console.log(stream, session.pollOutput().type) // 1n 'transmit'
//! ```
//!
//! Type and error conversion only; the protocol logic is the `weir` crate's. `@napi-rs/cli`
//! builds this crate and generates `index.d.ts` from its doc comments; the package's `index.js`
//! loads the module and exports its namespaces `mux`, `wire`, `frontier`, `flow` and
//! `transfer`;
//! `net.js` is the `node:net` adapter over `mux.Session`.

pub mod buffer;
pub mod errors;
pub mod flow;
pub mod frontier;
pub mod mux;
pub mod transfer;
pub mod wire;

use napi_derive::napi;

/// The version of the crate this native module was built from; `index.js` refuses a module
/// whose version is not the package's.
#[napi]
pub fn native_version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}
