/**
 * MQTT topic filters (3.1.1 §4.7): `+` matches exactly one level, `#` (last level only) matches
 * the parent level and everything below it. Filters starting with a wildcard never match topics
 * starting with `$` (broker-internal topics such as `$SYS/...`).
 */
export function topicMatches(filter: string, topic: string): boolean {
  if (filter === topic) return true;
  const f = filter.split('/');
  const t = topic.split('/');
  if (topic.startsWith('$') && (f[0] === '+' || f[0] === '#')) return false;
  for (let i = 0; i < f.length; i++) {
    const part = f[i];
    if (part === '#') return i === f.length - 1;
    if (i >= t.length) return false;
    if (part !== '+' && part !== t[i]) return false;
  }
  return f.length === t.length;
}

/** true when `filter` is a syntactically valid MQTT topic filter */
export function isValidFilter(filter: string): boolean {
  if (filter.length === 0 || filter.includes('\u0000')) return false;
  const parts = filter.split('/');
  for (let i = 0; i < parts.length; i++) {
    const p = parts[i] ?? '';
    if (p.includes('#') && (p !== '#' || i !== parts.length - 1)) return false;
    if (p.includes('+') && p !== '+') return false;
  }
  return true;
}
