/**
 * Clusters on a world map, offline: the land outline is Natural Earth's 1:110m data from the
 * world-atlas package (TopoJSON, about 55 KB, in this view's bundle), projected with d3-geo. No
 * tile server: edge sites often cannot reach one.
 */
import { useMemo } from 'react';
import { geoNaturalEarth1, geoPath } from 'd3-geo';
import { feature } from 'topojson-client';
import type { GeometryCollection, Topology } from 'topojson-specification';
import land110 from 'world-atlas/land-110m.json';

export interface MapPoint {
  id: string;
  label: string;
  lat: number;
  long: number;
  /** ACTIVE: filled; anything else: hollow */
  active: boolean;
}

const W = 960;
const H = 500;

/** `lat,long` or `lat,long,radius_km` (the SLA's and clusters' location form); null otherwise. */
export function parseLocation(text: string | null | undefined): { lat: number; long: number } | null {
  if (typeof text !== 'string') return null;
  const m = /^\s*(-?\d+(?:\.\d+)?)\s*,\s*(-?\d+(?:\.\d+)?)\s*(?:,\s*\d+(?:\.\d+)?\s*)?$/.exec(text);
  if (!m) return null;
  const lat = Number(m[1]);
  const long = Number(m[2]);
  return lat >= -90 && lat <= 90 && long >= -180 && long <= 180 ? { lat, long } : null;
}

export function WorldMap({ points, title }: { points: readonly MapPoint[]; title: string }) {
  const { outline, project } = useMemo(() => {
    const topo = land110 as unknown as Topology<{ land: GeometryCollection }>;
    const shape = feature(topo, topo.objects.land);
    const projection = geoNaturalEarth1().fitSize([W, H], shape);
    return { outline: geoPath(projection)(shape) ?? '', project: (long: number, lat: number) => projection([long, lat]) };
  }, []);
  return (
    <figure className="world-map">
      <svg viewBox={`0 0 ${W} ${H}`} role="img" aria-label={`${title}: ${points.map((p) => `${p.label} at ${p.lat}, ${p.long}`).join('; ') || 'none'}`}>
        <path d={outline} className="land" />
        {points.map((p) => {
          const xy = project(p.long, p.lat);
          if (xy === null) return null;
          return (
            <g key={p.id} transform={`translate(${xy[0].toFixed(1)},${xy[1].toFixed(1)})`}>
              <circle r="7" className={p.active ? 'site site-active' : 'site site-inactive'} />
              <text x="10" y="4" className="site-label">
                {p.label}
              </text>
            </g>
          );
        })}
      </svg>
      <figcaption className="muted">{title}</figcaption>
    </figure>
  );
}
