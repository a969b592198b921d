// The archive entry rules (src/artifacts/entries.ts): what may be unpacked.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { EntryChecker, type EntryInfo } from '../../src/artifacts/entries.js';

const checker = () => new EntryChecker({ maxBytes: 100, maxEntries: 10 });
const file = (path: string, size = 1): EntryInfo => ({ path, kind: 'file', size });

describe('archive entries', () => {
  test('files, directories and links that stay inside are accepted', () => {
    const c = checker();
    for (const entry of [
      file('a/b.txt'),
      { path: 'a/', kind: 'directory', size: 0 },
      { path: 'a/l', kind: 'symlink', size: 0, linkpath: 'b.txt' },
      { path: 'a/up', kind: 'symlink', size: 0, linkpath: '../a/b.txt' },
      { path: 'h', kind: 'hardlink', size: 0, linkpath: 'a/b.txt' },
      file('./c'),
    ] satisfies EntryInfo[]) {
      assert.equal(c.check(entry), undefined, entry.path);
    }
  });

  test('a symlink whose target climbs out through another symlink is refused, in either order', () => {
    // On disk "x/y/l3" -> "l2/../.." is two levels above the destination when "x/y/l2" -> "../..".
    const l2: EntryInfo = { path: 'x/y/l2', kind: 'symlink', size: 0, linkpath: '../..' };
    const l3: EntryInfo = { path: 'x/y/l3', kind: 'symlink', size: 0, linkpath: 'l2/../..' };
    for (const order of [[l2, l3], [l3, l2]]) {
      const c = checker();
      const problems = order.map((entry) => c.check(entry));
      assert.match(problems.join(' '), /symlink to "l2\/\.\.\/\.\.": "\.\." may only come first/);
    }
    assert.equal(checker().check({ path: 'a/b/l', kind: 'symlink', size: 0, linkpath: '../../c/d' }), undefined, 'leading ".." stay allowed');
  });

  test('paths and links that leave the destination are refused', () => {
    const cases: [EntryInfo, RegExp][] = [
      [file('../x'), /has "\.\." in its path/],
      [file('a/../../x'), /has "\.\." in its path/],
      [file('a\\..\\x'), /has "\.\." in its path/],
      [file('/etc/passwd'), /absolute path/],
      [file('C:\\x'), /absolute path/],
      [file(''), /empty or invalid name/],
      [{ path: 'l', kind: 'symlink', size: 0, linkpath: '/etc' }, /symlink to "\/etc", outside/],
      [{ path: 'a/l', kind: 'symlink', size: 0, linkpath: '../..' }, /symlink to "\.\.\/\.\.", outside/],
      [{ path: 'l', kind: 'symlink', size: 0, linkpath: '' }, /symlink to "", outside/],
      [{ path: 'h', kind: 'hardlink', size: 0, linkpath: '../x' }, /hard link to "\.\.\/x", outside/],
      [{ path: 'd', kind: 'other', typeName: 'FIFO', size: 0 }, /is a FIFO; only files/],
    ];
    for (const [entry, message] of cases) assert.match(checker().check(entry) ?? '', message, entry.path);
  });

  test('nothing may go through a symlink of the archive, nor hard-link to one', () => {
    const c = checker();
    assert.equal(c.check({ path: 'd', kind: 'symlink', size: 0, linkpath: '.' }), undefined);
    assert.match(c.check(file('d/x')) ?? '', /goes through the symlink "d"/);
    assert.match(c.check({ path: 'h', kind: 'hardlink', size: 0, linkpath: 'd' }) ?? '', /hard link through a symlink/);
  });

  test('entry count and unpacked size are bounded', () => {
    const many = checker();
    for (let i = 0; i < 10; i++) assert.equal(many.check(file(`f${i}`)), undefined);
    assert.match(many.check(file('f10')) ?? '', /more than 10 entries \(--artifact-max-entries\)/);
    const big = checker();
    assert.equal(big.check(file('a', 60)), undefined);
    assert.match(big.check(file('b', 41)) ?? '', /unpacks to more than 100 bytes \(--artifact-max-bytes\)/);
  });
});
