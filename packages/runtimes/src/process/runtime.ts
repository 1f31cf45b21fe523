/**
 * `process` virtualization: a native executable (a path on the worker, or an http(s) URL fetched
 * into the work root) run by the supervisor (../supervisor/supervisor.ts) under cgroups, as the
 * unprivileged workload user.
 */
import { RuntimeError } from '../types.ts';
import type { InstanceSpec, ProbeResult } from '../types.ts';
import type { Launch, LaunchContext, Launcher, RunAs } from '../supervisor/launcher.ts';
import { SupervisedRuntime } from '../supervisor/supervisor.ts';
import type { SupervisorOptions } from '../supervisor/supervisor.ts';
import { resolveCode, resolveLocalCode } from './code.ts';

export type ProcessRuntimeOptions = SupervisorOptions;

export class ProcessLauncher implements Launcher {
  readonly virtualization = 'process' as const;
  readonly #runAs: RunAs | undefined;
  readonly #workRoot: string;

  constructor(runAs: RunAs | undefined, workRoot: string) {
    this.#runAs = runAs;
    this.#workRoot = workRoot;
  }

  probe(host: { cgroups: boolean; detail: string }): Promise<ProbeResult> {
    const who = this.#runAs !== undefined ? `as ${this.#runAs.name} (uid ${this.#runAs.uid})` : `as uid ${process.getuid?.() ?? '?'}`;
    if (host.cgroups) return Promise.resolve({ available: true, detail: `native processes ${who}, limits by ${host.detail}` });
    return Promise.resolve({ available: true, detail: `native processes ${who}; no cgroup limits: ${host.detail} (instances asking for memory or vcpus are refused)` });
  }

  async launch(spec: InstanceSpec, _ctx: LaunchContext): Promise<Launch> {
    if (spec.code.trim() === '') throw new RuntimeError('invalid_spec', 'code (the executable) is empty');
    const executable = resolveLocalCode(spec.code) ?? (await resolveCode(spec.code, this.#workRoot));
    return { argv: [executable, ...(spec.cmd ?? []), ...(spec.args ?? [])], executable };
  }
}

export class ProcessRuntime extends SupervisedRuntime {
  constructor(opts: ProcessRuntimeOptions) {
    super(new ProcessLauncher(opts.runAs, opts.workRoot ?? `${opts.dataDir.replace(/\/+$/, '')}/work`), opts);
  }
}
