/**
 * The log of one instance, following live (GET .../logs?follow=1, read as a stream with the
 * bearer header). Lines are text nodes: whatever an instance prints is shown, never run.
 */
import { useEffect, useRef, useState } from 'react';
import type { ViewProps } from '../registry.ts';
import { stream } from '../../lib/api.ts';
import { Link } from '../../lib/router.tsx';
import { ErrorBox } from '../../components/error-box.tsx';

/** the most characters kept on screen (older lines are dropped) */
const KEEP = 512 * 1024;

export default function Logs({ params }: ViewProps) {
  const id = params['id'] ?? '';
  const n = params['n'] ?? '';
  const [text, setText] = useState('');
  const [error, setError] = useState<unknown>();
  const [following, setFollowing] = useState(true);
  const [ended, setEnded] = useState(false);
  const pre = useRef<HTMLPreElement>(null);

  useEffect(() => {
    if (!/^\d+$/.test(n)) {
      setError(new Error('the instance number is not a number'));
      return;
    }
    const ac = new AbortController();
    setText('');
    setEnded(false);
    setError(undefined);
    void (async () => {
      try {
        const res = await stream(`/api/service/${encodeURIComponent(id)}/instance/${n}/logs?tail=500${following ? '&follow=1' : ''}`, ac.signal);
        if (res.body === null) return;
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          setText((t) => {
            const all = t + value;
            return all.length > KEEP ? all.slice(all.indexOf('\n', all.length - KEEP) + 1) : all;
          });
        }
        setEnded(true);
      } catch (err) {
        if (!ac.signal.aborted) setError(err);
      }
    })();
    return () => ac.abort();
  }, [id, n, following]);

  useEffect(() => {
    const el = pre.current;
    if (el !== null && following) el.scrollTop = el.scrollHeight;
  }, [text, following]);

  return (
    <section aria-labelledby="logs-title">
      <p>
        <Link to="/applications">← Applications</Link>
      </p>
      <h1 id="logs-title">Logs of instance {n}</h1>
      <div className="toolbar">
        <label className="inline">
          <input type="checkbox" checked={following} onChange={(e) => setFollowing(e.target.checked)} /> Follow
        </label>
        {ended && <span className="muted">the log ended</span>}
      </div>
      <ErrorBox error={error} />
      <pre ref={pre} className="logs" tabIndex={0} aria-label="log lines" aria-live="off">
        {text}
      </pre>
    </section>
  );
}
