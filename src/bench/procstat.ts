/** Reading a process's CPU time from /proc (Linux). */
import { readFileSync } from "node:fs";

/** USER_HZ: the unit of utime/stime in /proc/PID/stat; 100 on Linux x86. */
const TICKS_PER_SECOND = 100;

/** CPU seconds (user + system, all threads) process `pid` has used so far. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  // Fields after the command name, which is in parentheses and may contain spaces:
  // [0] is field 3 (state), so utime (field 14) is [11] and stime (field 15) is [12].
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND;
}

/**
 * CPU nanoseconds the calling thread has run so far (/proc/thread-self/schedstat, its first
 * field): a worker's own CPU, exact to the nanosecond, whatever the other threads and the
 * neighbours' load do. Time spent waiting for a CPU is not in it.
 */
export function threadCpuNs(): number {
  return Number(readFileSync("/proc/thread-self/schedstat", "utf8").split(" ")[0]);
}
