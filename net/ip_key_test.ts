import assert from "node:assert/strict";
import { ipKey } from "./ip_key.ts";

Deno.test("ipKey() keeps IPv4, keys IPv6 by its /64, unmaps IPv4-mapped addresses", () => {
  assert.equal(ipKey("203.0.113.7"), "203.0.113.7");
  assert.equal(ipKey(" 203.0.113.7:8080 "), "203.0.113.7");
  assert.equal(ipKey("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
  assert.equal(ipKey("2001:0DB8:0001:0002:ffff:1:2:3"), "2001:db8:1:2::/64");
  assert.equal(ipKey("[2001:db8:1:2::9]:443"), "2001:db8:1:2::/64");
  assert.equal(ipKey("2001:db8::1"), "2001:db8:0:0::/64");
  assert.equal(ipKey("::1"), "0:0:0:0::/64");
  assert.equal(ipKey("fe80::1%eth0"), "fe80:0:0:0::/64");
  assert.equal(ipKey("::ffff:192.0.2.1"), "192.0.2.1");
  assert.equal(ipKey("not-an-address"), "not-an-address");
  assert.equal(ipKey("1::2::3"), "1::2::3");
});
