/** A file the hub reads at start (clusters, admin tokens) is unusable; names file and field. */
export class ConfigFileError extends Error {
  override readonly name = 'ConfigFileError';
  constructor(
    readonly file: string,
    readonly problems: readonly string[],
    options?: ErrorOptions,
  ) {
    super(`invalid file ${file}:\n  ${problems.join('\n  ')}`, options);
  }
}
