/** /admin/users: the users the caller may manage (Admin: all; Organization_Admin: its organisation). */
import '../infrastructure/views.css';
import { useState, type FormEvent } from 'react';
import type { OrganizationDoc, UserDoc } from '@oak/contracts';
import { api, hasRole, session, type Role } from '../../lib/api.ts';
import { useStore } from '../../lib/store.ts';
import { Confirm } from '../../components/confirm.tsx';
import { ErrorBox } from '../../components/error-box.tsx';
import type { ViewProps } from '../registry.ts';
import { useList, when } from './common.tsx';

const ROLES: Role[] = ['Admin', 'Organization_Admin', 'Application_Provider', 'Infrastructure_Provider'];

export default function UsersView(_props: ViewProps) {
  const s = useStore(session);
  const isAdmin = s !== null && s.user.roles.includes('Admin');
  const users = useList<UserDoc>('/api/users/');
  const orgs = useList<OrganizationDoc>('/api/organizations/');
  const [name, setName] = useState('');
  const [password, setPassword] = useState('');
  const [org, setOrg] = useState('');
  const [roles, setRoles] = useState<Role[]>(['Application_Provider']);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>();
  const [done, setDone] = useState<string>();
  const [removing, setRemoving] = useState<UserDoc>();
  const grantable = ROLES.filter((r) => r !== 'Admin' || isAdmin);

  const create = async (e: FormEvent): Promise<void> => {
    e.preventDefault();
    setBusy(true);
    setError(undefined);
    setDone(undefined);
    try {
      const u = await api.post<UserDoc>('/api/user/', { name, password, roles, ...(org !== '' ? { organization_id: org } : {}) });
      setDone(`created ${u.name}`);
      setName('');
      setPassword('');
      users.reload();
    } catch (err) {
      setError(err);
    } finally {
      // the password never stays in the page
      setPassword('');
      setBusy(false);
    }
  };

  return (
    <section aria-labelledby="users-title">
      <h1 id="users-title">Users</h1>
      <ErrorBox error={users.error} />
      {users.items !== undefined && (
        <div className="table-wrap">
          <table>
            <caption className="muted">{isAdmin ? 'Every user of the root' : 'The users of your organisation'}</caption>
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Organisation</th>
                <th scope="col">Roles</th>
                <th scope="col">Created</th>
                <th scope="col">
                  <span className="visually-hidden">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {users.items.map((u) => (
                <tr key={u._id}>
                  <td>{u.name}</td>
                  <td>{u.organization ?? u.organization_id}</td>
                  <td>{u.roles.map((r) => r.replace(/_/g, ' ')).join(', ')}</td>
                  <td>{when(u.created_at)}</td>
                  <td>
                    {u._id !== s?.user.id && (isAdmin || !u.roles.includes('Admin')) && (
                      <button type="button" onClick={() => setRemoving(u)} aria-label={`Delete user ${u.name}`}>
                        Delete
                      </button>
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      <form className="card" onSubmit={(e) => void create(e)} aria-labelledby="new-user">
        <h2 id="new-user">New user</h2>
        <label>
          Name
          <input value={name} onChange={(e) => setName(e.target.value)} required maxLength={64} pattern="[A-Za-z0-9_.@\-]{1,64}" autoComplete="off" />
        </label>
        <label>
          Password (at least 8 characters)
          <input type="password" value={password} onChange={(e) => setPassword(e.target.value)} required minLength={8} autoComplete="new-password" />
        </label>
        {isAdmin && (
          <label>
            Organisation
            <select value={org} onChange={(e) => setOrg(e.target.value)}>
              <option value="">mine</option>
              {(orgs.items ?? []).map((o) => (
                <option key={o._id} value={o._id}>
                  {o.name}
                </option>
              ))}
            </select>
          </label>
        )}
        <fieldset>
          <legend>Roles</legend>
          {grantable.map((r) => (
            <label key={r} className="check">
              <input type="checkbox" checked={roles.includes(r)} onChange={(e) => setRoles((prev) => (e.target.checked ? [...prev, r] : prev.filter((x) => x !== r)))} />
              {r.replace(/_/g, ' ')}
            </label>
          ))}
        </fieldset>
        <ErrorBox error={error} />
        {done !== undefined && <p role="status">{done}</p>}
        <button type="submit" className="primary" disabled={busy || roles.length === 0}>
          Create user
        </button>
      </form>
      {removing !== undefined && (
        <Confirm
          title={`Delete user ${removing.name}?`}
          confirmLabel="Delete user"
          onConfirm={async () => {
            await api.del(`/api/user/${encodeURIComponent(removing._id)}`);
            users.reload();
          }}
          onClose={() => setRemoving(undefined)}
        >
          <p>Their sessions end at once. Their organisation's applications stay.</p>
        </Confirm>
      )}
      {!hasRole(s, 'Organization_Admin') && <p className="muted">Your roles cannot manage users.</p>}
    </section>
  );
}
