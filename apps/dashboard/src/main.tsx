import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { App } from './app.tsx';
import './styles.css';

const el = document.getElementById('root');
if (el === null) throw new Error('index.html has no #root');
createRoot(el).render(
  <StrictMode>
    <App />
  </StrictMode>,
);
