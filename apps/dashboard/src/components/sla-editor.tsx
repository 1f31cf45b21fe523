/**
 * A JSON editor for SLAs with the validator's findings next to the lines they are about, checked
 * as you type. `check` is the very function the root runs (from @oak/contracts), so what it says
 * here is what a 422 would say.
 */
import { useEffect, useId, useMemo, useRef, useState, type ChangeEvent } from 'react';
import type { FieldIssue } from '@oak/contracts';
import { lineCol, locatePaths, whereIs } from '../lib/json-locate.ts';

export interface Checked {
  /** the parsed document when it is valid */
  value?: unknown;
  errors: FieldIssue[];
  warnings: FieldIssue[];
}

export interface SlaEditorProps {
  label: string;
  text: string;
  onText: (t: string) => void;
  check: (doc: unknown) => { errors: FieldIssue[]; warnings: FieldIssue[] };
  onChecked: (c: Checked) => void;
  /** issues the server answered (shown like the local ones) */
  serverIssues?: FieldIssue[];
  rows?: number;
  /** largest accepted upload (bytes) */
  maxBytes?: number;
}

interface Located extends FieldIssue {
  line?: number;
  kind: 'error' | 'warning';
}

export const MAX_SLA_BYTES = 1024 * 1024;

export function SlaEditor({ label, text, onText, check, onChecked, serverIssues, rows = 22, maxBytes = MAX_SLA_BYTES }: SlaEditorProps) {
  const id = useId();
  const area = useRef<HTMLTextAreaElement>(null);
  const [issues, setIssues] = useState<Located[]>([]);
  const [uploadError, setUploadError] = useState<string>();

  useEffect(() => {
    const t = setTimeout(() => {
      let doc: unknown;
      try {
        doc = JSON.parse(text);
      } catch (err) {
        const msg = err instanceof Error ? err.message : String(err);
        const pos = /position (\d+)/.exec(msg);
        const where = pos?.[1] !== undefined ? lineCol(text, Number(pos[1])) : undefined;
        setIssues([{ path: '', message: `not valid JSON: ${msg.replace(/ in JSON at position \d+.*$/, '')}`, kind: 'error', ...(where ? { line: where.line } : {}) }]);
        onChecked({ errors: [{ path: '', message: 'not valid JSON' }], warnings: [] });
        return;
      }
      const r = check(doc);
      const map = locatePaths(text);
      const at = (i: FieldIssue, kind: Located['kind']): Located => {
        const w = whereIs(map, i.path);
        return { ...i, kind, ...(w ? { line: w.line } : {}) };
      };
      setIssues([...r.errors.map((i) => at(i, 'error')), ...r.warnings.map((i) => at(i, 'warning'))]);
      onChecked({ ...(r.errors.length === 0 ? { value: doc } : {}), errors: r.errors, warnings: r.warnings });
    }, 120);
    return () => clearTimeout(t);
    // check and onChecked are fixed for the editor's life: the text is what changes
  }, [text]);

  const shown = useMemo(() => {
    if (serverIssues === undefined || serverIssues.length === 0) return issues;
    const map = locatePaths(text);
    const extra = serverIssues
      .filter((s) => !issues.some((i) => i.path === s.path && i.message === s.message))
      .map((s): Located => {
        const w = whereIs(map, s.path);
        return { ...s, kind: 'error', ...(w ? { line: w.line } : {}) };
      });
    return [...issues, ...extra];
  }, [issues, serverIssues, text]);

  const goto = (line: number): void => {
    const el = area.current;
    if (el === null) return;
    const lines = el.value.split('\n');
    const start = lines.slice(0, line - 1).reduce((n, l) => n + l.length + 1, 0);
    el.focus();
    el.setSelectionRange(start, start + (lines[line - 1]?.length ?? 0));
  };

  const upload = (e: ChangeEvent<HTMLInputElement>): void => {
    const f = e.target.files?.[0];
    e.target.value = '';
    setUploadError(undefined);
    if (f === undefined) return;
    if (f.size > maxBytes) {
      setUploadError(`${f.name} is ${Math.round(f.size / 1024)} KB; SLAs are limited to ${Math.round(maxBytes / 1024)} KB`);
      return;
    }
    void f.text().then(onText, (err: unknown) => setUploadError(`cannot read ${f.name}: ${String(err)}`));
  };

  const errors = shown.filter((i) => i.kind === 'error');
  const lineCount = text.split('\n').length;
  const marks = new Map<number, Located[]>();
  for (const i of shown) if (i.line !== undefined) marks.set(i.line, [...(marks.get(i.line) ?? []), i]);

  return (
    <div className="sla-editor">
      <div className="toolbar">
        <label className="file">
          Upload an SLA file (JSON)
          <input type="file" accept=".json,application/json" onChange={upload} />
        </label>
      </div>
      {uploadError !== undefined && (
        <div className="error" role="alert">
          {uploadError}
        </div>
      )}
      <label htmlFor={`${id}-text`}>{label}</label>
      <div className="editor">
        <div className="gutter" aria-hidden="true">
          {Array.from({ length: lineCount }, (_, n) => (
            <div key={n} className={marks.has(n + 1) ? (marks.get(n + 1)?.some((m) => m.kind === 'error') ? 'mark err' : 'mark warn') : undefined}>
              {n + 1}
            </div>
          ))}
        </div>
        <textarea
          id={`${id}-text`}
          ref={area}
          className="mono"
          rows={rows}
          spellCheck={false}
          autoCapitalize="off"
          autoCorrect="off"
          wrap="off"
          value={text}
          maxLength={maxBytes}
          aria-invalid={errors.length > 0}
          aria-describedby={`${id}-issues`}
          onChange={(e) => onText(e.target.value)}
          onScroll={(e) => {
            const g = e.currentTarget.previousElementSibling;
            if (g instanceof HTMLElement) g.scrollTop = e.currentTarget.scrollTop;
          }}
        />
      </div>
      <div id={`${id}-issues`} className="issues" aria-live="polite">
        {shown.length === 0 ? (
          <p className="ok">No problems: the SLA is valid.</p>
        ) : (
          <ul>
            {shown.map((i, n) => (
              <li key={n} className={`issue ${i.kind}`} data-path={i.path}>
                {i.line !== undefined ? (
                  <button type="button" className="link" onClick={() => goto(i.line ?? 1)} aria-label={`go to line ${i.line}`}>
                    line {i.line}
                  </button>
                ) : null}{' '}
                <span className="kind">{i.kind}</span> <code className="path">{i.path === '' ? '(document)' : i.path}</code>: <span className="msg">{i.message}</span>
                {i.hint !== undefined && <div className="hint">{i.hint}</div>}
              </li>
            ))}
          </ul>
        )}
      </div>
    </div>
  );
}
