/**
 * What per-address limits count by: the edge's per-IP request and socket
 * limits, and the core's connections per IP.
 *
 * @module
 */

/**
 * The key of an address: an IPv4 address as it is (a port dropped), an
 * IPv6 one by its /64 prefix (`2001:db8:1:2::/64`), since one subscriber
 * line usually holds a whole /64 and could otherwise take a slot per
 * address; an IPv4-mapped IPv6 address is its IPv4 address. Anything else
 * is kept as it came.
 */
export function ipKey(address: string): string {
  let a = address.trim().toLowerCase();
  if (a.startsWith("[")) a = a.slice(1, a.indexOf("]") >>> 0);
  else if (/^[\d.]+:\d+$/.test(a)) a = a.slice(0, a.indexOf(":"));
  if (!a.includes(":")) return a;
  a = a.split("%")[0];
  const v4 = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(a);
  if (v4) return v4[1];
  const [head, tail, ...more] = a.split("::");
  if (more.length > 0) return a;
  const left = head === "" ? [] : head.split(":");
  const right = tail === undefined || tail === "" ? [] : tail.split(":");
  const missing = 8 - left.length - right.length;
  if (missing < 0 || (tail === undefined && missing !== 0)) return a;
  const groups = [...left, ...Array(missing).fill("0"), ...right];
  const prefix = groups.slice(0, 4).map((g) => parseInt(g, 16));
  if (prefix.some((g) => !(g >= 0 && g <= 0xffff))) return a;
  return `${prefix.map((g) => g.toString(16)).join(":")}::/64`;
}
