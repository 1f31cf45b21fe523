/**
 * Queries of a fixed shape, built and compiled by kysely once. Building and compiling a query
 * (its operation tree, the expression builder, the SQL text) costs more on SQLite than running the
 * store's small queries, and a deploy runs some fifty of them. A shape is built once with
 * placeholder values; each call takes the compiled SQL and puts its own values in the
 * placeholders' parameter positions, so the SQL text, and with it SQLite's prepared statement
 * (db.ts), is the same every time. Both backends compile their own SQL ($1 or ?) the same way.
 *
 * Only values may vary between calls of one key: whatever changes the SQL (which columns a patch
 * sets, how many values an `in` list has) belongs in the key.
 */
import type { CompiledQuery, Compilable, QueryId, RootOperationNode } from 'kysely';
import { createQueryId } from 'kysely';

/** the placeholder of argument i: text no value of the store's can equal (it holds NUL, which PostgreSQL's text refuses) */
const placeholder = (i: number): string => `\u0000oak-arg-${i}\u0000`;
const ARG = /^\u0000oak-arg-(\d+)\u0000$/;

type Slot = { arg: number } | { value: unknown };

class Shape {
  readonly sql: string;
  readonly query: RootOperationNode;
  readonly slots: readonly Slot[];

  constructor(key: string, arity: number, compiled: CompiledQuery<unknown>) {
    if (compiled.sql.includes('\u0000')) throw new Error(`prepared query ${key}: an argument ended up in the SQL text`);
    const used = new Set<number>();
    this.slots = compiled.parameters.map((v) => {
      const m = typeof v === 'string' ? ARG.exec(v) : null;
      if (m === null) return { value: v };
      const arg = Number(m[1]);
      used.add(arg);
      return { arg };
    });
    if (used.size !== arity || [...used].some((a) => a >= arity)) throw new Error(`prepared query ${key}: uses ${used.size} of its ${arity} arguments`);
    this.sql = compiled.sql;
    this.query = compiled.query;
  }

  bind(args: readonly unknown[]): CompiledQuery<unknown> {
    const parameters = this.slots.map((s) => ('arg' in s ? args[s.arg] : s.value));
    const queryId: QueryId = createQueryId();
    return { sql: this.sql, query: this.query, parameters, queryId };
  }
}

/** the compiled shapes of one database (its dialect), by key */
export class PreparedQueries {
  readonly #shapes = new Map<string, Shape>();
  readonly #max: number;

  constructor(max = 512) {
    this.#max = max;
  }

  get size(): number {
    return this.#shapes.size;
  }

  /**
   * The query of shape `key` with `args` in its placeholders. `build` gets one placeholder per
   * argument (typed as the caller's values: they are only ever compiled) and is called on the
   * first use of the key only.
   */
  bind<A extends readonly unknown[]>(key: string, build: (...p: A) => Compilable<unknown>, args: A): CompiledQuery<unknown> {
    let shape = this.#shapes.get(key);
    if (shape === undefined) {
      const ps = args.map((_, i) => placeholder(i)) as unknown as A;
      shape = new Shape(key, args.length, build(...ps).compile());
      if (this.#shapes.size >= this.#max) this.#shapes.delete(this.#shapes.keys().next().value as string);
      this.#shapes.set(key, shape);
    }
    return shape.bind(args);
  }
}
