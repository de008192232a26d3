'use strict'
// The JS examples that open the native module's docs (src/*.rs, `//! ```js` blocks) run.

const assert = require('node:assert/strict')
const { readdirSync, readFileSync } = require('node:fs')
const { join } = require('node:path')
const { test } = require('node:test')

const SOURCES = join(__dirname, '..', 'src')

/** The ```js blocks of a file's `//!` docs. */
function examples (file) {
  const docs = readFileSync(join(SOURCES, file), 'utf8').split('\n')
    .filter((line) => line.startsWith('//!'))
    .map((line) => line.replace(/^\/\/! ?/, ''))
  const blocks = []
  let block = null
  for (const line of docs) {
    if (block === null && line === '```js') block = []
    else if (block !== null && line === '```') blocks.push(block.join('\n')), (block = null)
    else if (block !== null) block.push(line)
  }
  return blocks
}

const files = readdirSync(SOURCES).filter((name) => name.endsWith('.rs'))
for (const file of files) {
  for (const [i, code] of examples(file).entries()) {
    test(`src/${file}, example ${i + 1}`, () => {
      const lines = []
      const run = new Function('require', 'console', code)
      run(require, { log: (...values) => lines.push(values) })
      assert.ok(lines.length > 0, 'the example prints what it shows')
    })
  }
}

test('every module of the native module opens with an example', () => {
  const without = files.filter((file) => file !== 'buffer.rs' && examples(file).length === 0)
  assert.deepEqual(without, [])
})
