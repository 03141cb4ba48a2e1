// Starts a local plane (no controller manager, for speed), prints its directory and pids as one
// JSON line, then waits to be killed. Used to prove that a killed owner leaves nothing behind.
import { readPids } from '../../src/localplane/reaper.ts';
import { startLocalPlane } from '../../src/localplane/plane.ts';

const plane = await startLocalPlane({ controllers: [], log: () => undefined });
process.stdout.write(`${JSON.stringify({ dir: plane.dir, pids: readPids(plane.dir) })}\n`);
setInterval(() => undefined, 60_000);
