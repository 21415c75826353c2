// How a command that shows events as they come ends: at the first of its own
// end (done), the --duration, Ctrl-C or SIGTERM.

/** Resolves at the first of: done settles, durationMs passes, SIGINT, SIGTERM. */
export async function untilStopped(done: Promise<unknown>, durationMs?: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  let onSignal: () => void = () => {};
  const stopped = new Promise<void>((resolve) => {
    onSignal = resolve;
    if (durationMs !== undefined) timer = setTimeout(resolve, durationMs);
  });
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    await Promise.race([done, stopped]);
  } finally {
    clearTimeout(timer);
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
