import { useState, type FormEvent } from 'react';
import { login, logoutNotice } from './lib/api.ts';
import { useStore } from './lib/store.ts';
import { ErrorBox } from './components/error-box.tsx';

export function Login() {
  const [username, setUser] = useState('');
  const [password, setPassword] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>();
  const notice = useStore(logoutNotice);
  const submit = async (e: FormEvent): Promise<void> => {
    e.preventDefault();
    setBusy(true);
    setError(undefined);
    try {
      await login(username, password);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return (
    <main className="login" id="main">
      <h1>oak</h1>
      {notice !== undefined && (
        <p className="error" role="status">
          {notice}
        </p>
      )}
      <form onSubmit={(e) => void submit(e)} aria-label="Log in">
        <label>
          User name
          <input name="username" autoComplete="username" required value={username} onChange={(e) => setUser(e.target.value)} maxLength={200} />
        </label>
        <label>
          Password
          <input name="password" type="password" autoComplete="current-password" required value={password} onChange={(e) => setPassword(e.target.value)} maxLength={1024} />
        </label>
        <ErrorBox error={error} />
        <button type="submit" disabled={busy}>
          Log in
        </button>
      </form>
    </main>
  );
}
