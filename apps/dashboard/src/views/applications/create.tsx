import type { ViewProps } from '../registry.ts';

export default function View(_props: ViewProps) {
  return <h1>create</h1>;
}
