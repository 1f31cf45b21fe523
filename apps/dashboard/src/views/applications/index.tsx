import type { ViewProps } from '../registry.ts';
import { ErrorBox } from '../../components/error-box.tsx';
import { Link } from '../../lib/router.tsx';
import { stateSummary, useApplications } from './data.ts';

export default function Applications(_props: ViewProps) {
  const { apps, services, error } = useApplications();
  return (
    <section aria-labelledby="apps-title">
      <h1 id="apps-title">Applications</h1>
      <div className="toolbar">
        <Link to="/applications/new" className="button primary">
          New application
        </Link>
      </div>
      <ErrorBox error={error} />
      {apps === undefined ? (
        <p aria-busy="true">Loading…</p>
      ) : apps.length === 0 ? (
        <p>No applications yet in your organisation.</p>
      ) : (
        <div className="table-wrap">
          <table>
            <caption className="muted">Applications of your organisation, with the states of their instances (live)</caption>
            <thead>
              <tr>
                <th scope="col">Application</th>
                <th scope="col">Namespace</th>
                <th scope="col">Services</th>
                <th scope="col">Instances</th>
              </tr>
            </thead>
            <tbody>
              {apps.map((a) => {
                const list = services[a.applicationID] ?? [];
                return (
                  <tr key={a.applicationID} data-app={a.application_name}>
                    <td>
                      <Link to={`/applications/${encodeURIComponent(a.applicationID)}`}>{a.application_name}</Link>
                      {a.application_desc !== '' && <div className="muted">{a.application_desc}</div>}
                    </td>
                    <td>{a.application_namespace}</td>
                    <td>{list.map((s) => s.microservice_name).join(', ') || '—'}</td>
                    <td className="states">{stateSummary(list)}</td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}
