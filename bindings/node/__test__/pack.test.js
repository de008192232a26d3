'use strict'
// The package as a user gets it: `npm pack`, then `npm install` of the tarball into a fresh
// folder, and imported from there (CommonJS and ESM); and the messages of a package whose native
// module is missing or was built from another version.

const assert = require('node:assert/strict')
const { execFileSync } = require('node:child_process')
const { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } = require('node:fs')
const { tmpdir } = require('node:os')
const { join } = require('node:path')
const { test, after } = require('node:test')

const PACKAGE = join(__dirname, '..')
const scratch = mkdtempSync(join(tmpdir(), 'weir-pack-'))
after(() => rmSync(scratch, { recursive: true, force: true }))

const run = (file, args, cwd) => execFileSync(file, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })

test('the packed tarball installs into a fresh folder and works from there', () => {
  const tarball = run('npm', ['pack', '--silent', '--pack-destination', scratch], PACKAGE).trim().split('\n').pop()
  const app = join(scratch, 'app')
  mkdirSync(app)
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', private: true }))
  run('npm', ['install', '--silent', '--no-audit', '--no-fund', '--offline', join(scratch, tarball)], app)
  const installed = join(app, 'node_modules', 'weir')
  assert.ok(readdirSync(installed).some((name) => name.endsWith('.node')), 'the tarball holds the native module')
  assert.ok(!readdirSync(installed).includes('src'), 'the tarball holds no Rust sources')

  const cjs = `
    const assert = require('node:assert/strict')
    const weir = require('weir')
    const { connect, serve, Router } = require('weir/net')
    assert.ok(require.resolve('weir').startsWith(${JSON.stringify(installed)}))
    const s = new weir.mux.Session('client', weir.mux.Config.mux())
    assert.equal(s.openStream(0n, '/a'), 1n)
    ;(async () => {
      const server = await serve(new Router().unary('/p.P/Echo', (r) => r.message))
      const client = await connect({ port: server.port })
      assert.equal(String(await client.call('/p.P/Echo', 'installed')), 'installed')
      await client.close(); await server.close()
      console.log('cjs ok')
    })()`
  assert.equal(run(process.execPath, ['-e', cjs], app).trim(), 'cjs ok')
  const esm = `
    import { mux } from 'weir'
    import { Router } from 'weir/net'
    if (typeof mux.Session !== 'function' || typeof Router !== 'function') throw new Error('missing exports')
    console.log(import.meta.resolve('weir'))`
  const resolved = run(process.execPath, ['--input-type=module', '-e', esm], app).trim()
  assert.ok(resolved.startsWith(`file://${installed}`), resolved)
})

test('a missing or mismatched native module fails to load and says what to run', () => {
  const copy = join(scratch, 'broken')
  cpSync(PACKAGE, copy, { recursive: true, filter: (path) => !path.includes('node_modules') && !path.includes('__test__') })
  const native = readdirSync(copy).find((name) => name.endsWith('.node'))
  const load = () => {
    try {
      require(join(copy, 'index.js'))
    } catch (error) {
      return error
    } finally {
      delete require.cache[join(copy, 'index.js')]
    }
    return null
  }

  const manifest = JSON.parse(readFileSync(join(copy, 'package.json'), 'utf8'))
  writeFileSync(join(copy, 'package.json'), JSON.stringify({ ...manifest, version: '9.9.9' }))
  delete require.cache[join(copy, 'package.json')]
  const mismatched = load()
  assert.equal(mismatched?.code, 'WEIR_NATIVE_MODULE')
  assert.match(mismatched.message, /built from weir 0\.1\.0, but this package is weir 9\.9\.9/)
  assert.match(mismatched.message, /npm run build/)

  rmSync(join(copy, native))
  const missing = load()
  assert.equal(missing?.code, 'WEIR_NATIVE_MODULE')
  assert.match(missing.message, /no native module for/)
  assert.match(missing.message, /napi build --platform --release/)
})
