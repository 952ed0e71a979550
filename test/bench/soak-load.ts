// The soak's load process: fleet/fleet-load.ts as it is (it reads its arguments and IPC
// commands when imported), forked under this name so that a `pkill -f fleet-load` aimed at a
// fleet bench running alongside does not take the soak's clusters down too.
import './fleet/fleet-load.js';
