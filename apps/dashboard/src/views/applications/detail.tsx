import type { ViewProps } from '../registry.ts';

export default function View(_props: ViewProps) {
  return <h1>detail</h1>;
}
