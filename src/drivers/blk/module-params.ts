/**
 * The blk modules' arguments, as `insmod` passes them (`key=value` strings): Linux's
 * module_param of an unsigned int.
 */

/**
 * The value of `key=N` in `args`: `dflt` when absent; a RangeError naming module `module` when N is
 * not a whole number >= 0 (insmod refuses the module).
 */
export function uintParam(module: string, args: readonly string[], key: string, dflt: number): number {
  for (const a of args) {
    if (a.startsWith(`${key}=`)) {
      const v = Number(a.slice(key.length + 1));
      if (Number.isInteger(v) && v >= 0) return v;
      throw new RangeError(`Cannot load ${module}: bad ${a}`);
    }
  }
  return dflt;
}
