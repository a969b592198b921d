import assert from 'node:assert/strict';
import { test } from 'node:test';
import { bearerTokenMatches } from '../../src/security.js';

const TOKEN = 's3cret-token-0123456789';

test('the bearer scheme is case-insensitive (RFC 7235), the token is not', () => {
  for (const scheme of ['Bearer', 'bearer', 'BEARER']) assert.ok(bearerTokenMatches(`${scheme} ${TOKEN}`, TOKEN), scheme);
  assert.ok(!bearerTokenMatches(`Bearer ${TOKEN.toUpperCase()}`, TOKEN));
});

test('anything but the scheme and the exact token is refused', () => {
  for (const header of [undefined, '', 'Bearer', 'Bearer ', TOKEN, `Basic ${TOKEN}`, `Bearer ${TOKEN}x`, `Bearer ${TOKEN.slice(1)}`, `Bearer${TOKEN}`, `x Bearer ${TOKEN}`]) {
    assert.ok(!bearerTokenMatches(header, TOKEN), JSON.stringify(header));
  }
});
