/** /admin/organizations: the organisations (Admin creates and deletes; others see their own). */
import '../infrastructure/views.css';
import { useState, type FormEvent } from 'react';
import type { OrganizationDoc } from '@oak/contracts';
import { api, session } from '../../lib/api.ts';
import { useStore } from '../../lib/store.ts';
import { Confirm } from '../../components/confirm.tsx';
import { ErrorBox } from '../../components/error-box.tsx';
import type { ViewProps } from '../registry.ts';
import { useList, when } from './common.tsx';

export default function OrganizationsView(_props: ViewProps) {
  const s = useStore(session);
  const isAdmin = s !== null && s.user.roles.includes('Admin');
  const orgs = useList<OrganizationDoc>('/api/organizations/');
  const [name, setName] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>();
  const [removing, setRemoving] = useState<OrganizationDoc>();
  const create = async (e: FormEvent): Promise<void> => {
    e.preventDefault();
    setBusy(true);
    setError(undefined);
    try {
      await api.post('/api/organization/', { name });
      setName('');
      orgs.reload();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return (
    <section aria-labelledby="orgs-title">
      <h1 id="orgs-title">Organisations</h1>
      <ErrorBox error={orgs.error} />
      {orgs.items !== undefined && (
        <div className="table-wrap">
          <table>
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Id</th>
                <th scope="col">Created</th>
                {isAdmin && (
                  <th scope="col">
                    <span className="visually-hidden">Actions</span>
                  </th>
                )}
              </tr>
            </thead>
            <tbody>
              {orgs.items.map((o) => (
                <tr key={o._id}>
                  <td>{o.name}</td>
                  <td className="mono">{o._id}</td>
                  <td>{when(o.created_at)}</td>
                  {isAdmin && (
                    <td>
                      {o._id !== s?.user.org && (
                        <button type="button" onClick={() => setRemoving(o)} aria-label={`Delete organisation ${o.name}`}>
                          Delete
                        </button>
                      )}
                    </td>
                  )}
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {isAdmin && (
        <form className="card" onSubmit={(e) => void create(e)} aria-labelledby="new-org">
          <h2 id="new-org">New organisation</h2>
          <label>
            Name (letters, digits, _ or -)
            <input value={name} onChange={(e) => setName(e.target.value)} required maxLength={64} pattern="[A-Za-z0-9_\-]{1,64}" autoComplete="off" />
          </label>
          <ErrorBox error={error} />
          <button type="submit" className="primary" disabled={busy}>
            Create organisation
          </button>
        </form>
      )}
      {removing !== undefined && (
        <Confirm
          title={`Delete organisation ${removing.name}?`}
          confirmLabel="Delete organisation"
          onConfirm={async () => {
            await api.del(`/api/organization/${encodeURIComponent(removing._id)}`);
            orgs.reload();
          }}
          onClose={() => setRemoving(undefined)}
        >
          <p>Only an organisation without users and applications can be deleted.</p>
        </Confirm>
      )}
    </section>
  );
}
