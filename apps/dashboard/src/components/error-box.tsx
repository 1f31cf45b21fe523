import { describe } from '../lib/api.ts';

/** A failure as the server said it: message, hint and code. */
export function ErrorBox({ error, title }: { error: unknown; title?: string }) {
  if (error === undefined || error === null) return null;
  const d = describe(error);
  return (
    <div className="error" role="alert">
      {title !== undefined && <strong>{title}: </strong>}
      <span>{d.message}</span>
      {d.hint !== undefined && <div className="hint">{d.hint}</div>}
      {d.code !== undefined && <div className="code">{d.code}</div>}
    </div>
  );
}
