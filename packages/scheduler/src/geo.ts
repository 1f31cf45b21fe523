/**
 * Geography for geo and latency constraints.
 *
 * Locations are written `lat,long` or `lat,long,radius` (radius in km: the area a cluster covers).
 * Distance to a location with a radius is measured to the edge of its area (0 inside it), so a
 * cluster declared as "48.1,11.6,50" satisfies a geo constraint 120 km from its centre with a
 * threshold of 70 km.
 *
 * Latency model, used when no measurement is available: light in fibre covers about 200 km per ms,
 * so a round trip costs 1 ms per 100 km of great-circle distance, plus 1 ms for switching and the
 * last mile: `rtt_ms = distance_km / 100 + 1`. It is deliberately optimistic (real paths are longer
 * than great circles); a measured value (`latency_ms` on a candidate) always wins over it.
 */
import type { GeoPoint } from './types.ts';

const EARTH_RADIUS_KM = 6371.0088;
const RAD = Math.PI / 180;

/** Great-circle distance in km between two points (haversine formula); radius is ignored. */
export function haversineKm(a: GeoPoint, b: GeoPoint): number {
  const dLat = (b.lat - a.lat) * RAD;
  const dLong = (b.long - a.long) * RAD;
  const s = Math.sin(dLat / 2) ** 2 + Math.cos(a.lat * RAD) * Math.cos(b.lat * RAD) * Math.sin(dLong / 2) ** 2;
  return 2 * EARTH_RADIUS_KM * Math.asin(Math.min(1, Math.sqrt(s)));
}

/** Distance in km from `point` to the area `area` covers: to its centre minus its radius, never below 0. */
export function distanceToAreaKm(point: GeoPoint, area: GeoPoint): number {
  return Math.max(0, haversineKm(point, area) - (area.radius_km ?? 0) - (point.radius_km ?? 0));
}

/** Estimated round-trip time in ms over `distanceKm` (see the model at the top of this file). */
export function estimateRttMs(distanceKm: number): number {
  return distanceKm / 100 + 1;
}

const NUM = String.raw`\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+))\s*`;
const LOCATION_RE = new RegExp(`^${NUM},${NUM}(?:,${NUM})?$`);

/**
 * Parses `lat,long` or `lat,long,radius` (whitespace allowed). Returns null for free text or
 * out-of-range values (latitude -90..90, longitude -180..180, radius >= 0).
 */
export function parseGeoPoint(text: string | null | undefined): GeoPoint | null {
  if (typeof text !== 'string') return null;
  const m = LOCATION_RE.exec(text);
  if (!m) return null;
  const lat = Number(m[1]);
  const long = Number(m[2]);
  if (!(lat >= -90 && lat <= 90 && long >= -180 && long <= 180)) return null;
  if (m[3] === undefined) return { lat, long };
  const radius_km = Number(m[3]);
  if (!(radius_km >= 0)) return null;
  return { lat, long, radius_km };
}

const parsedCache = new Map<string, GeoPoint | null>();
const CACHE_LIMIT = 10_000;

/** parseGeoPoint with a bounded memo: worker summaries repeat the same few location strings. */
export function parseGeoPointCached(text: string | null | undefined): GeoPoint | null {
  if (typeof text !== 'string') return null;
  const hit = parsedCache.get(text);
  if (hit !== undefined) return hit;
  const p = parseGeoPoint(text);
  if (parsedCache.size >= CACHE_LIMIT) parsedCache.clear();
  parsedCache.set(text, p);
  return p;
}

export function formatGeoPoint(p: GeoPoint): string {
  return p.radius_km === undefined ? `${p.lat},${p.long}` : `${p.lat},${p.long},${p.radius_km}`;
}
