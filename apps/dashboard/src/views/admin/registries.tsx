/**
 * /admin/registries: the organisation's logins to container registries. The password is write
 * only: the root never answers it and this page clears it as soon as it is sent.
 */
import '../infrastructure/views.css';
import { useState, type FormEvent } from 'react';
import { api, hasRole, session } from '../../lib/api.ts';
import { useStore } from '../../lib/store.ts';
import { Confirm } from '../../components/confirm.tsx';
import { ErrorBox } from '../../components/error-box.tsx';
import type { ViewProps } from '../registry.ts';
import { useList, when } from './common.tsx';

interface RegistryDoc {
  host: string;
  username: string;
  organization_id: string;
  created_at: string;
  updated_at: string;
}

export default function RegistriesView(_props: ViewProps) {
  const s = useStore(session);
  const canWrite = hasRole(s, 'Organization_Admin');
  const list = useList<RegistryDoc>('/api/registries');
  const [host, setHost] = useState('');
  const [username, setUsername] = useState('');
  const [password, setPassword] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>();
  const [done, setDone] = useState<string>();
  const [removing, setRemoving] = useState<RegistryDoc>();
  const save = async (e: FormEvent): Promise<void> => {
    e.preventDefault();
    setBusy(true);
    setError(undefined);
    setDone(undefined);
    try {
      await api.put(`/api/registries/${encodeURIComponent(host.trim().toLowerCase())}`, { username, password });
      setDone(`login for ${host} stored`);
      setHost('');
      setUsername('');
      list.reload();
    } catch (err) {
      setError(err);
    } finally {
      setPassword('');
      setBusy(false);
    }
  };
  return (
    <section aria-labelledby="reg-title">
      <h1 id="reg-title">Registry logins</h1>
      <p className="muted">Deploys of your organisation's images from these hosts pull with these logins. Passwords are never shown.</p>
      <ErrorBox error={list.error} />
      {list.items !== undefined &&
        (list.items.length === 0 ? (
          <p>No registry login stored.</p>
        ) : (
          <div className="table-wrap">
            <table>
              <thead>
                <tr>
                  <th scope="col">Host</th>
                  <th scope="col">User name</th>
                  <th scope="col">Updated</th>
                  {canWrite && (
                    <th scope="col">
                      <span className="visually-hidden">Actions</span>
                    </th>
                  )}
                </tr>
              </thead>
              <tbody>
                {list.items.map((r) => (
                  <tr key={r.host}>
                    <td className="mono">{r.host}</td>
                    <td>{r.username}</td>
                    <td>{when(r.updated_at)}</td>
                    {canWrite && (
                      <td>
                        <button type="button" onClick={() => setRemoving(r)} aria-label={`Remove the login for ${r.host}`}>
                          Remove
                        </button>
                      </td>
                    )}
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        ))}
      {canWrite && (
        <form className="card" onSubmit={(e) => void save(e)} aria-labelledby="new-reg">
          <h2 id="new-reg">Store a login</h2>
          <label>
            Registry host (as in image names, e.g. registry.example.com:5000)
            <input value={host} onChange={(e) => setHost(e.target.value)} required maxLength={261} autoComplete="off" />
          </label>
          <label>
            User name
            <input value={username} onChange={(e) => setUsername(e.target.value)} required maxLength={256} autoComplete="off" />
          </label>
          <label>
            Password or access token
            <input type="password" value={password} onChange={(e) => setPassword(e.target.value)} required maxLength={8192} autoComplete="new-password" />
          </label>
          <ErrorBox error={error} />
          {done !== undefined && <p role="status">{done}</p>}
          <button type="submit" className="primary" disabled={busy}>
            Store login
          </button>
        </form>
      )}
      {removing !== undefined && (
        <Confirm
          title={`Remove the login for ${removing.host}?`}
          confirmLabel="Remove"
          onConfirm={async () => {
            await api.del(`/api/registries/${encodeURIComponent(removing.host)}`);
            list.reload();
          }}
          onClose={() => setRemoving(undefined)}
        >
          <p>Deploys of private images from this host will fail until a login is stored again.</p>
        </Confirm>
      )}
    </section>
  );
}
