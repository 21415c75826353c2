// Defaults the commands share, apart from the modules that use them (which
// the command line imports only when a command runs).
export const DEFAULT_STORE = '/var/lib/irqtrace/events.jsonl';
