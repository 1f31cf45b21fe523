/**
 * Confirmation for destructive actions: a modal <dialog> (focus trapped by the browser, Escape
 * cancels). The action runs only after the user types or clicks the confirm button.
 */
import { useEffect, useRef, useState, type ReactNode } from 'react';
import { ErrorBox } from './error-box.tsx';

export interface ConfirmProps {
  title: string;
  children?: ReactNode;
  confirmLabel: string;
  onConfirm: () => Promise<void>;
  onClose: () => void;
}

export function Confirm({ title, children, confirmLabel, onConfirm, onClose }: ConfirmProps) {
  const ref = useRef<HTMLDialogElement>(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>();
  useEffect(() => {
    const d = ref.current;
    if (d !== null && !d.open) d.showModal();
  }, []);
  const go = async (): Promise<void> => {
    setBusy(true);
    setError(undefined);
    try {
      await onConfirm();
      onClose();
    } catch (err) {
      setError(err);
      setBusy(false);
    }
  };
  return (
    <dialog ref={ref} className="confirm" aria-labelledby="confirm-title" onClose={onClose} onCancel={onClose}>
      <h2 id="confirm-title">{title}</h2>
      {children}
      <ErrorBox error={error} />
      <div className="actions">
        <button type="button" onClick={onClose} autoFocus>
          Cancel
        </button>
        <button type="button" className="danger" disabled={busy} onClick={() => void go()}>
          {confirmLabel}
        </button>
      </div>
    </dialog>
  );
}
