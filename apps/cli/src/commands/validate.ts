/** `oak validate <sla>`: the root's own SLA validator, offline. */
import type { Command } from 'commander';
import type { Sla } from '@oak/contracts';
import { globalsOf } from '../context.ts';
import { chooseOutput, configPath, loadConfig } from '../config.ts';
import { createUi, emit, paint } from '../output.ts';
import { InvalidDocumentError, loadDocument, printIssues } from '../sla.ts';

function describe(sla: Sla): string {
  const apps = sla.applications.length;
  const services = sla.applications.reduce((n, a) => n + a.microservices.length, 0);
  return `${apps} application${apps === 1 ? '' : 's'}, ${services} service${services === 1 ? '' : 's'}`;
}

export function registerValidate(program: Command): void {
  program
    .command('validate')
    .description('check an SLA file offline, with the same validator as the root')
    .argument('<sla>', 'SLA file (JSON, or YAML if .yaml/.yml; - for stdin)')
    .addHelpText(
      'after',
      `
Every problem is printed as "path: message (hint: ...)"; unknown fields are warnings.
Exit code 0 when valid, 1 when not, 2 when the file cannot be read.
With -o json: { "valid": bool, "errors": [...], "warnings": [...] } on stdout.

Examples:
  $ oak validate examples/web-server.json
  $ oak validate sla.yaml -o json | jq '.errors[].path'`,
    )
    .action(async (file: string, _opts: unknown, cmd: Command) => {
      // no root needed: only the output settings
      const g = globalsOf(cmd);
      const ui = createUi({ format: chooseOutput(g.output, loadConfig(configPath())), color: g.color !== false });
      const doc = await loadDocument(file);
      const { validateSla } = await import('@oak/contracts');
      const v = validateSla(doc.value);
      const errors = v.ok ? [] : v.errors;
      if (ui.format === 'table') printIssues(ui, doc.name, errors, v.warnings);
      await emit(ui, { valid: v.ok, file: doc.name, errors, warnings: v.warnings }, () =>
        v.ok ? `${paint(ui.color, 'green', '✓')} ${doc.name}: valid SLA (${describe(v.sla)})` : '',
      );
      if (!v.ok) throw new InvalidDocumentError(`${doc.name} is not a valid SLA`);
    });
}
