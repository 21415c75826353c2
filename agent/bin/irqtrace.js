#!/usr/bin/env node
// The irqtrace command as npm links it (node_modules/.bin/irqtrace, `npx irqtrace`). A committed
// file, not the build's output: npm makes the link at install time, before the TypeScript is
// built (npm ci, then npm run build), and makes none for a target that is missing then.
try {
  await import('../dist/cli/main.js');
} catch (err) {
  if (err?.code === 'ERR_MODULE_NOT_FOUND' && String(err.message).includes('dist/cli/main.js')) {
    process.stderr.write('irqtrace: the command is not built yet: run npm run build\n');
    process.exit(2);
  }
  throw err;
}
