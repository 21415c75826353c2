// Generates the protobufjs static code for proto/irqtrace/v1/*.proto and
// compiles the package's TypeScript. Output goes to dist/ (never committed).
import { execFileSync } from 'node:child_process';
import { cpSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);
const cliDir = dirname(require.resolve('protobufjs-cli/package.json'));
// Generated into src/gen (ignored by git) so that src/index.ts type-checks
// against it, then copied next to the compiled index in dist/.
const out = join(here, 'src', 'gen');
mkdirSync(out, { recursive: true });

const protoDir = join(here, 'irqtrace', 'v1');
const protos = readdirSync(protoDir)
  .filter((f) => f.endsWith('.proto'))
  .sort()
  .map((f) => join(protoDir, f));

const js = join(out, 'irqtrace.js');
execFileSync(
  process.execPath,
  [join(cliDir, 'bin', 'pbjs'), '-t', 'static-module', '-w', 'es6', '--no-verify', '--no-delimited', '--no-service', '-p', here, '-o', js, ...protos],
  { stdio: 'inherit', cwd: here },
);
// Node's ESM loader needs the file extension, and protobufjs is CommonJS:
// import its module.exports as the default export.
const source = readFileSync(js, 'utf8').replace(
  /import \* as \$protobuf from "protobufjs\/minimal";/,
  'import $protobuf from "protobufjs/minimal.js";',
);
writeFileSync(js, source);
execFileSync(
  process.execPath,
  [join(cliDir, 'bin', 'pbts'), '--no-comments', '-o', join(out, 'irqtrace.d.ts'), js],
  { stdio: 'inherit', cwd: here },
);
const dts = readFileSync(join(out, 'irqtrace.d.ts'), 'utf8');
// Same two fixes for the types; and take Long's ESM declaration, the one
// uint64.ts imports, so that there is one Long class in the program.
writeFileSync(
  join(out, 'irqtrace.d.ts'),
  dts.replace(/from "protobufjs"/g, 'from "protobufjs/index.js"').replace('import Long = require("long");', 'import Long from "long";'),
);

execFileSync(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', join(here, 'tsconfig.json')], {
  stdio: 'inherit',
});
cpSync(out, join(here, 'dist', 'gen'), { recursive: true });
