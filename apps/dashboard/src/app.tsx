/**
 * The shell: login when logged out, else the layout (header, nav of the views the user's roles
 * allow, connection banner) around the view matching the path.
 */
import { Suspense, lazy, useEffect, useMemo, useState, type ComponentType } from 'react';
import { hasRole, logout, session, type Session } from './lib/api.ts';
import { connection } from './lib/connection.ts';
import { Link, match, navigate, usePath } from './lib/router.tsx';
import { useStore } from './lib/store.ts';
import { Login } from './login.tsx';
import { ViewBoundary } from './components/boundary.tsx';
import { views, type ViewDef, type ViewProps } from './views/registry.ts';

const loaded = new Map<ViewDef, ComponentType<ViewProps>>();
function component(v: ViewDef): ComponentType<ViewProps> {
  let c = loaded.get(v);
  if (c === undefined) {
    c = lazy(v.load);
    loaded.set(v, c);
  }
  return c;
}

export function allowed(s: Session | null, v: ViewDef): boolean {
  return s !== null && (v.roles === undefined || hasRole(s, ...v.roles));
}

function Banner() {
  const c = useStore(connection.state);
  const [, tick] = useState(0);
  useEffect(() => {
    if (c.up) return;
    const t = setInterval(() => tick((n) => n + 1), 1000);
    return () => clearInterval(t);
  }, [c.up]);
  if (c.up) return null;
  const secs = c.retryAt === undefined ? undefined : Math.max(0, Math.ceil((c.retryAt - Date.now()) / 1000));
  return (
    <div className="banner" role="status" aria-live="polite">
      The root at {location.host} is unreachable; reconnecting{secs !== undefined && secs > 0 ? ` in ${secs} s` : '…'}
    </div>
  );
}

function UserMenu({ s }: { s: Session }) {
  const [busy, setBusy] = useState(false);
  return (
    <div className="user">
      <span title={s.user.roles.join(', ')}>
        {s.user.name} <small>({s.user.roles.map((r) => r.replace(/_/g, ' ')).join(', ')})</small>
      </span>
      <button
        type="button"
        disabled={busy}
        onClick={() => {
          setBusy(true);
          void logout().finally(() => {
            setBusy(false);
            navigate('/', { replace: true });
          });
        }}
      >
        Log out
      </button>
    </div>
  );
}

export function App() {
  const s = useStore(session);
  const path = usePath();
  const mine = useMemo(() => views.filter((v) => allowed(s, v)), [s]);
  const found = useMemo(() => {
    for (const v of mine) {
      const params = match(v.path, path);
      if (params !== undefined) return { v, params };
    }
    return undefined;
  }, [mine, path]);
  const first = mine.find((v) => v.nav !== false);
  useEffect(() => {
    if (s !== null && path === '/' && first !== undefined) navigate(first.path, { replace: true });
  }, [s, path, first]);

  if (s === null) {
    return (
      <>
        <Banner />
        <Login />
      </>
    );
  }
  const View = found === undefined ? undefined : component(found.v);
  return (
    <>
      <a className="skip" href="#main">
        Skip to content
      </a>
      <header className="top">
        <Link to="/" className="brand">
          oak
        </Link>
        <nav aria-label="Main">
          <ul>
            {mine
              .filter((v) => v.nav !== false)
              .map((v) => (
                <li key={v.path}>
                  <Link to={v.path} aria-current={path === v.path || path.startsWith(`${v.path}/`) ? 'page' : undefined}>
                    {v.label}
                  </Link>
                </li>
              ))}
          </ul>
        </nav>
        <UserMenu s={s} />
      </header>
      <Banner />
      <main id="main" tabIndex={-1}>
        {View !== undefined && found !== undefined ? (
          <ViewBoundary key={found.v.path} onRetry={() => loaded.delete(found.v)}>
            <Suspense fallback={<p aria-busy="true">Loading…</p>}>
              <View params={found.params} />
            </Suspense>
          </ViewBoundary>
        ) : path === '/' ? (
          <p>{first === undefined ? 'Your roles give no view here; the CLI (oak) may still serve you.' : 'Loading…'}</p>
        ) : (
          <p>
            Nothing here. <Link to="/">Back to the start</Link>
          </p>
        )}
      </main>
    </>
  );
}
