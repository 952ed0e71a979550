/** Hub configuration: process settings and the files they name. */
export {
  adminCredentialsFileSchema,
  loadAdminCredentials,
  type AdminCredentials,
  type AdminRole,
} from './admin-credentials.js';
export { ClusterDirectory, clustersFileSchema, type ClusterEntry } from './cluster-directory.js';
export { ConfigFileError } from './config-file-error.js';
export { hubOptionsSchema, type CompiledHubOptions, type HubOptions } from './hub-options.js';
export { listenerCredentials, type ListenerTls } from './listener-credentials.js';
export { readYamlFile } from './read-yaml-file.js';
export {
  workerOptionsSchema,
  type CompiledWorkerOptions,
  type WorkerOptions,
} from './worker-options.js';
export {
  checkRedisMode,
  redisSettingsOf,
  stateOptionFields,
  type RedisOptionFields,
} from './state-options.js';
