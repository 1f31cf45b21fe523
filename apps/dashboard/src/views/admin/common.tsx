/** Pieces the administration pages share: a list loaded from the API and reloaded on demand. */
import { useCallback, useEffect, useState } from 'react';
import { api } from '../../lib/api.ts';
import { useEpoch } from '../../lib/events.ts';

export interface Listed<T> {
  items: T[] | undefined;
  error: unknown;
  reload: () => void;
}

/** GET `path` now, after a reconnection, and whenever reload() is called. */
export function useList<T>(path: string): Listed<T> {
  const [items, setItems] = useState<T[]>();
  const [error, setError] = useState<unknown>();
  const [n, setN] = useState(0);
  const epoch = useEpoch();
  useEffect(() => {
    const ac = new AbortController();
    api.get<T[]>(path, { signal: ac.signal }).then(
      (list) => {
        setItems(list);
        setError(undefined);
      },
      (err: unknown) => {
        if (!ac.signal.aborted) setError(err);
      },
    );
    return () => ac.abort();
  }, [path, n, epoch]);
  const reload = useCallback(() => setN((x) => x + 1), []);
  return { items, error, reload };
}

export function when(iso: string | null | undefined): string {
  return iso === null || iso === undefined ? '—' : new Date(iso).toLocaleString();
}
