// Defaults the commands share, apart from the modules that use them (which
// the command line imports only when a command runs).
export const DEFAULT_STORE = '/var/lib/irqtrace/events.jsonl';
/** The kubelet's pod log root (its podLogsRootDirectory): <namespace>_<name>_<uid> per pod. */
export const DEFAULT_POD_LOGS = '/var/log/pods';
/** Where the agent serves its events to local readers (`irqtrace record`). */
export const DEFAULT_AGENT_SOCKET = '/run/irqtrace/agent.sock';
