// `irqtrace driver load`: the driver loader (driver/loader.ts), as the agent
// pod's init container runs it, or a person on one machine. It exits 0 when it
// leaves a state, module or not: a node without a module still gets an agent
// (eBPF), told why by the state file.
import { pino } from 'pino';
import { loadDriver } from '../driver/loader.js';
import { writeDriverState } from '../driver/state.js';

export interface DriverLoadOptions {
  source: string;
  cache: string;
  state?: string;
  hostUsrLib?: string;
  proc: string;
}

export async function driverLoad(o: DriverLoadOptions): Promise<number> {
  const log = pino({ base: { component: 'irqtrace-driver' } });
  try {
    const state = await loadDriver({
      source: o.source,
      cacheDir: o.cache,
      procRoot: o.proc,
      ...(o.hostUsrLib ? { hostUsrLib: o.hostUsrLib } : {}),
      log: (fields, message) => { log.info(fields, message); },
    });
    if (o.state) await writeDriverState(o.state, state);
    return 0;
  } catch (err) {
    // Not a reason about the node (those are in the state): a defect or an unusable volume.
    log.fatal({ err: err instanceof Error ? err.message : String(err) }, 'driver: the loader failed');
    return 1;
  }
}
