/**
 * Where each JSON path (`applications[0].microservices[1].memory`, the validator's form) starts
 * in a JSON text: line and column of its key, or of the element for array items. Used to show an
 * issue next to the line it is about. Also turns JSON.parse's offset into a line and column.
 */
export interface Where {
  line: number;
  col: number;
  offset: number;
}

function seg(base: string, s: string | number): string {
  if (typeof s === 'number') return `${base}[${s}]`;
  if (/^[A-Za-z_$][\w$]*$/.test(s)) return base === '' ? s : `${base}.${s}`;
  return `${base}[${JSON.stringify(s)}]`;
}

export function lineCol(text: string, offset: number): Where {
  let line = 1;
  let last = -1;
  for (let i = 0; i < offset && i < text.length; i++) {
    if (text.charCodeAt(i) === 10) {
      line++;
      last = i;
    }
  }
  return { line, col: offset - last, offset };
}

/** Paths to positions; empty when the text is not JSON (the caller reports the syntax error). */
export function locatePaths(text: string): Map<string, Where> {
  const out = new Map<string, Where>();
  let i = 0;
  const ws = (): void => {
    while (i < text.length && /\s/.test(text[i] ?? '')) i++;
  };
  const str = (): string => {
    const start = i;
    i++;
    while (i < text.length && text[i] !== '"') i += text[i] === '\\' ? 2 : 1;
    i++;
    return JSON.parse(text.slice(start, i)) as string;
  };
  const value = (path: string, depth: number): void => {
    if (depth > 64) throw new Error('too deep');
    ws();
    const c = text[i];
    if (c === '{') {
      i++;
      ws();
      if (text[i] === '}') {
        i++;
        return;
      }
      for (;;) {
        ws();
        const at = i;
        const key = str();
        const p = seg(path, key);
        out.set(p, lineCol(text, at));
        ws();
        i++; // :
        value(p, depth + 1);
        ws();
        if (text[i] === ',') i++;
        else {
          i++; // }
          return;
        }
      }
    } else if (c === '[') {
      i++;
      ws();
      if (text[i] === ']') {
        i++;
        return;
      }
      for (let n = 0; ; n++) {
        ws();
        const p = seg(path, n);
        out.set(p, lineCol(text, i));
        value(p, depth + 1);
        ws();
        if (text[i] === ',') i++;
        else {
          i++; // ]
          return;
        }
      }
    } else if (c === '"') str();
    else {
      while (i < text.length && !/[\s,\]}]/.test(text[i] ?? '')) i++;
    }
  };
  try {
    value('', 0);
  } catch {
    /* partial map: what was located before the failure */
  }
  return out;
}

/** The position of `path`, or of its nearest located ancestor (a missing field: its object). */
export function whereIs(map: Map<string, Where>, path: string): Where | undefined {
  let p = path;
  for (;;) {
    const w = map.get(p);
    if (w !== undefined) return w;
    const cut = Math.max(p.lastIndexOf('.'), p.lastIndexOf('['));
    if (cut <= 0) return map.get(p.slice(0, Math.max(cut, 0))) ?? undefined;
    p = p.slice(0, cut);
  }
}
