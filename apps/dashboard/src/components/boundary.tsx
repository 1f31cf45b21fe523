/**
 * Catches what a view throws while rendering (a chunk that could not be loaded because the root
 * is unreachable, a bug) and shows it with a retry, instead of a blank page.
 */
import { Component, type ErrorInfo, type ReactNode } from 'react';
import { connection } from '../lib/connection.ts';
import { ErrorBox } from './error-box.tsx';

interface Props {
  children: ReactNode;
  /** called before retrying (e.g. to forget a failed chunk load) */
  onRetry: () => void;
}

export class ViewBoundary extends Component<Props, { error: unknown }> {
  override state: { error: unknown } = { error: undefined };

  static getDerivedStateFromError(error: unknown): { error: unknown } {
    return { error };
  }

  override componentDidCatch(error: unknown, _info: ErrorInfo): void {
    this.props.onRetry();
    // a failed dynamic import is a network failure: the banner says so and the probe starts
    if (error instanceof TypeError && /fetch|import/i.test(error.message)) connection.lost();
  }

  override render(): ReactNode {
    if (this.state.error === undefined) return this.props.children;
    return (
      <div>
        <ErrorBox error={this.state.error} title="This view could not be shown" />
        <button
          type="button"
          onClick={() => {
            this.props.onRetry();
            this.setState({ error: undefined });
          }}
        >
          Retry
        </button>
      </div>
    );
  }
}
