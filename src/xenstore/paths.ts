/**
 * XenStore node names, as C xenstored checks and resolves them (xenstored_core.c
 * `is_valid_nodename`, `canonicalize`, `get_parent`; xenstored_watch.c `is_child`).
 */

const VALID = /^[A-Za-z0-9/_@-]*$/;
const LOCAL_DOMAIN = /^\/local\/domain\/(\d{1,5})\//;

/**
 * True for an absolute node name C xenstored accepts: starts with `/`, no trailing `/`
 * (except `/` itself), no `//`, only `[A-Za-z0-9/_@-]`, and at most `pathMax` characters
 * after a `/local/domain/<id>/` prefix (or in all, elsewhere).
 */
export function isValidNodename(name: string, pathMax: number): boolean {
  if (name.length === 0 || name.charCodeAt(0) !== 47 /* / */) return false;
  if (name.length > 1 && name.charCodeAt(name.length - 1) === 47) return false;
  if (name.includes("//")) return false;
  const m = LOCAL_DOMAIN.exec(name);
  const localOff = m ? m[0].length : 0;
  if (name.length > localOff + pathMax) return false;
  return VALID.test(name);
}

/** Relative names resolve against the connection's home, `/local/domain/<id>`. */
export function canonicalize(home: string, name: string): string {
  const c = name.charCodeAt(0);
  if (c === 47 /* / */ || c === 64 /* @ */) return name;
  return `${home}/${name}`;
}

/** `/a/b` → `/a`; `/a` → `/`. Not defined for `/`. */
export function parentOf(name: string): string {
  const slash = name.lastIndexOf("/");
  return slash <= 0 ? "/" : name.slice(0, slash);
}

/** `/a/b` → `b`. */
export function baseOf(name: string): string {
  return name.slice(name.lastIndexOf("/") + 1);
}

/** `/a` + `b` → `/a/b`; `/` + `b` → `/b`. */
export function childPath(parent: string, child: string): string {
  return parent === "/" ? `/${child}` : `${parent}/${child}`;
}

/** Is `child` the node `parent` or below it? `/` is everyone's parent; `/a` is not `/ab`'s. */
export function isChild(child: string, parent: string): boolean {
  if (parent === "/") return true;
  if (!child.startsWith(parent)) return false;
  return child.length === parent.length || child.charCodeAt(parent.length) === 47;
}
