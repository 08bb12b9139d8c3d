// Validates an AsyncAPI document with the official parser; prints diagnostics, exits 1 on errors.
import { Parser, fromFile } from '@asyncapi/parser';
import { resolve } from 'node:path';

const file = resolve(process.argv[2]);
const parser = new Parser();
const { document, diagnostics } = await fromFile(parser, file).parse();
const errors = diagnostics.filter((d) => d.severity === 0);
for (const d of diagnostics) {
  console.log(`${['error', 'warning', 'info', 'hint'][d.severity]} ${d.code}: ${d.message} at ${d.path.join('/')}`);
}
console.log(JSON.stringify({ errors: errors.length, warnings: diagnostics.filter((d) => d.severity === 1).length,
                             channels: document ? document.channels().length : 0 }));
process.exit(errors.length || !document ? 1 : 0);
