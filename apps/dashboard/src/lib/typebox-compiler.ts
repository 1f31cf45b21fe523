/**
 * Stands in for `@sinclair/typebox/compiler` in the browser bundle (see vite.config.ts): the same
 * schemas checked by TypeBox's interpreter instead of generated code, because the dashboard's
 * Content-Security-Policy forbids eval. Only what @oak/contracts uses is provided.
 */
import type { Static, TSchema } from '@sinclair/typebox';
import { Value, type ValueErrorIterator } from '@sinclair/typebox/value';

export class TypeCheck<T extends TSchema> {
  readonly schema: T;
  constructor(schema: T) {
    this.schema = schema;
  }
  Check(value: unknown): value is Static<T> {
    return Value.Check(this.schema, value);
  }
  Errors(value: unknown): ValueErrorIterator {
    return Value.Errors(this.schema, value);
  }
}

export const TypeCompiler = {
  Compile<T extends TSchema>(schema: T): TypeCheck<T> {
    return new TypeCheck(schema);
  },
};
