/**
 * /admin/tokens: join tokens (Admin, Infrastructure_Provider). A new token's secret is shown once,
 * right after it is created, and kept nowhere else (not in the list, not after leaving the page).
 */
import '../infrastructure/views.css';
import { useState, type FormEvent } from 'react';
import { api } from '../../lib/api.ts';
import { Confirm } from '../../components/confirm.tsx';
import { ErrorBox } from '../../components/error-box.tsx';
import type { ViewProps } from '../registry.ts';
import { useList, when } from './common.tsx';

interface TokenDoc {
  id: string;
  kind: 'cluster' | 'worker';
  name: string | null;
  cluster: string | null;
  state: 'active' | 'expired' | 'revoked';
  created_at: string;
  expires_at: string | null;
  revoked_at: string | null;
  last_used_at: string | null;
  uses: number;
}

export default function TokensView(_props: ViewProps) {
  const tokens = useList<TokenDoc>('/api/tokens');
  const [kind, setKind] = useState<'cluster' | 'worker'>('cluster');
  const [target, setTarget] = useState('');
  const [ttlH, setTtlH] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>();
  const [secret, setSecret] = useState<{ id: string; token: string }>();
  const [revoking, setRevoking] = useState<TokenDoc>();
  const create = async (e: FormEvent): Promise<void> => {
    e.preventDefault();
    setBusy(true);
    setError(undefined);
    setSecret(undefined);
    try {
      const body: Record<string, unknown> = { kind };
      if (target !== '') body[kind === 'cluster' ? 'name' : 'cluster'] = target;
      if (ttlH !== '') body.ttl_s = Math.round(Number(ttlH) * 3600);
      const t = await api.post<TokenDoc & { token: string }>('/api/tokens', body);
      setSecret({ id: t.id, token: t.token });
      tokens.reload();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return (
    <section aria-labelledby="tokens-title">
      <h1 id="tokens-title">Join tokens</h1>
      <ErrorBox error={tokens.error} />
      <form className="card" onSubmit={(e) => void create(e)} aria-labelledby="new-token">
        <h2 id="new-token">New join token</h2>
        <label>
          Kind
          <select value={kind} onChange={(e) => setKind(e.target.value === 'worker' ? 'worker' : 'cluster')}>
            <option value="cluster">cluster: a cluster joins this root</option>
            <option value="worker">worker: workers join a cluster</option>
          </select>
        </label>
        <label>
          {kind === 'cluster' ? 'Cluster name (optional: else bound at first use)' : 'Cluster the workers join'}
          <input value={target} onChange={(e) => setTarget(e.target.value)} required={kind === 'worker'} maxLength={64} pattern="[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}" autoComplete="off" />
        </label>
        <label>
          Expires after (hours, optional)
          <input type="number" min={0.02} max={8784} step="any" value={ttlH} onChange={(e) => setTtlH(e.target.value)} />
        </label>
        <ErrorBox error={error} />
        <button type="submit" className="primary" disabled={busy}>
          Create token
        </button>
      </form>
      {secret !== undefined && (
        <div className="card" role="status">
          <p>
            Token <span className="mono">{secret.id}</span>, shown this once: copy it now.
          </p>
          <label>
            The new token
            <input readOnly value={secret.token} className="mono" onFocus={(e) => e.currentTarget.select()} />
          </label>
          <div className="actions">
            <button type="button" onClick={() => void navigator.clipboard?.writeText(secret.token)}>
              Copy
            </button>
            <button type="button" onClick={() => setSecret(undefined)}>
              Done, hide it
            </button>
          </div>
        </div>
      )}
      {tokens.items !== undefined && (
        <div className="table-wrap">
          <table>
            <caption className="muted">Secrets are never shown again; the root keeps only their hash.</caption>
            <thead>
              <tr>
                <th scope="col">Id</th>
                <th scope="col">Kind</th>
                <th scope="col">For</th>
                <th scope="col">State</th>
                <th scope="col">Uses</th>
                <th scope="col">Expires</th>
                <th scope="col">
                  <span className="visually-hidden">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {tokens.items.map((t) => (
                <tr key={t.id}>
                  <td className="mono">{t.id}</td>
                  <td>{t.kind}</td>
                  <td>{(t.kind === 'cluster' ? t.name : t.cluster) ?? <span className="muted">any</span>}</td>
                  <td>{t.state}</td>
                  <td>
                    {t.uses}
                    {t.last_used_at !== null ? `, last ${when(t.last_used_at)}` : ''}
                  </td>
                  <td>{t.expires_at === null ? 'never' : when(t.expires_at)}</td>
                  <td>
                    {t.state === 'active' && (
                      <button type="button" onClick={() => setRevoking(t)} aria-label={`Revoke token ${t.id}`}>
                        Revoke
                      </button>
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {revoking !== undefined && (
        <Confirm
          title={`Revoke token ${revoking.id}?`}
          confirmLabel="Revoke"
          onConfirm={async () => {
            await api.del(`/api/tokens/${encodeURIComponent(revoking.id)}`);
            tokens.reload();
          }}
          onClose={() => setRevoking(undefined)}
        >
          <p>{revoking.kind === 'worker' ? 'The workers that joined with it lose their credentials at once.' : 'Clusters that joined with it are disconnected.'}</p>
        </Confirm>
      )}
    </section>
  );
}
