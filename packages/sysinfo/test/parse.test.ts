import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  cgroupInfoFromMounts, cpuPercentBetween, cpuQuotaFor, parseCgroupMounts, parseCpuMax, parseFlatKeyed, parseMax,
  parseMeminfo, parseProcCgroup, parseProcPidStat, parseProcStat,
} from '../src/index.ts';

test('/proc/stat: total and idle of the aggregate line, percent between readings', () => {
  const a = parseProcStat('cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 50 0 25 400 25 0 0 0 0 0\nintr 1\n');
  assert.deepEqual(a, { total: 1000, idle: 850 });
  const b = parseProcStat('cpu  200 0 100 1600 100 0 0 0 0 0\n');
  assert.equal(cpuPercentBetween(a, b), 15);
  assert.equal(cpuPercentBetween(b, b), 0);
  assert.throws(() => parseProcStat('intr 1\n'));
});

test('/proc/meminfo', () => {
  const m = parseMeminfo('MemTotal:       16318212 kB\nMemFree:         1000000 kB\nMemAvailable:    8000000 kB\nHugePages_Total:       0\n');
  assert.equal(m.get('MemTotal'), 16318212);
  assert.equal(m.get('MemAvailable'), 8000000);
  assert.equal(m.get('HugePages_Total'), 0);
});

test('cgroup v2 flat keyed files: memory.events, cpu.stat', () => {
  const ev = parseFlatKeyed('low 0\nhigh 0\nmax 12\noom 2\noom_kill 1\noom_group_kill 0\n');
  assert.equal(ev.get('oom_kill'), 1);
  const cpu = parseFlatKeyed('usage_usec 123456\nuser_usec 100000\nsystem_usec 23456\nnr_periods 0\n');
  assert.equal(cpu.get('usage_usec'), 123456);
});

test('cgroup v1 memory.oom_control', () => {
  const m = parseFlatKeyed('oom_kill_disable 0\nunder_oom 0\noom_kill 3\n');
  assert.equal(m.get('oom_kill'), 3);
});

test('cgroup v2 limits: memory.max and cpu.max', () => {
  assert.equal(parseMax('max\n'), Infinity);
  assert.equal(parseMax('33554432\n'), 33554432);
  assert.throws(() => parseMax('x'));
  assert.deepEqual(parseCpuMax('max 100000\n'), { quota_us: Infinity, period_us: 100000 });
  assert.deepEqual(parseCpuMax('50000 100000\n'), { quota_us: 50000, period_us: 100000 });
  assert.deepEqual(cpuQuotaFor(1.5), { quota_us: 150000, period_us: 100000 });
  assert.deepEqual(cpuQuotaFor(0.001), { quota_us: 1000, period_us: 100000 });
});

test('/proc/<pid>/stat with spaces and parentheses in comm', () => {
  const s = parseProcPidStat('4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 1 0 987654 1000000 250 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n');
  assert.equal(s.pid, 4242);
  assert.equal(s.comm, 'my (odd) name');
  assert.equal(s.state, 'S');
  assert.equal(s.ppid, 1);
  assert.equal(s.pgrp, 4242);
  assert.equal(s.session, 4242);
  assert.equal(s.utime, 7);
  assert.equal(s.stime, 3);
  assert.equal(s.starttime, 987654);
  assert.equal(s.rss_pages, 250);
});

const HYBRID = `31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate
`;
const PURE_V2 = `22 1 0:21 / /sys rw - sysfs sysfs rw
27 22 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
`;

test('mountinfo: hybrid layout uses the v1 controllers', () => {
  const mounts = parseCgroupMounts(HYBRID);
  assert.equal(mounts.length, 5);
  const info = cgroupInfoFromMounts(mounts);
  assert.equal(info.version, 'hybrid');
  assert.equal(info.memoryController, '/sys/fs/cgroup/memory');
  assert.equal(info.cpuController, '/sys/fs/cgroup/cpu,cpuacct');
  assert.equal(info.cpuacctController, '/sys/fs/cgroup/cpu,cpuacct');
  assert.equal(info.unified, '/sys/fs/cgroup/unified');
  assert.equal(info.writable, true);
});

test('mountinfo: pure v2, v1 only, read-only, none', () => {
  const v2 = cgroupInfoFromMounts(parseCgroupMounts(PURE_V2));
  assert.equal(v2.version, 2);
  assert.equal(v2.memoryController, '/sys/fs/cgroup');
  assert.equal(v2.cpuController, '/sys/fs/cgroup');
  const v1 = cgroupInfoFromMounts(parseCgroupMounts(HYBRID.split('\n').filter((l) => !l.includes('cgroup2')).join('\n')));
  assert.equal(v1.version, 1);
  const ro = cgroupInfoFromMounts(parseCgroupMounts(PURE_V2.replace('rw,nosuid', 'ro,nosuid')));
  assert.equal(ro.writable, false);
  assert.match(ro.detail, /read-only/);
  const none = cgroupInfoFromMounts([]);
  assert.equal(none.version, undefined);
  assert.equal(none.writable, false);
});

test('/proc/<pid>/cgroup', () => {
  const v1 = parseProcCgroup('9:name=systemd:/\n4:memory:/oak/x\n2:cpu,cpuacct:/oak/x\n0::/\n');
  assert.equal(v1.byController.get('memory'), '/oak/x');
  assert.equal(v1.byController.get('cpuacct'), '/oak/x');
  assert.equal(v1.v2, '/');
  const v2 = parseProcCgroup('0::/oak/abc\n');
  assert.equal(v2.v2, '/oak/abc');
});
