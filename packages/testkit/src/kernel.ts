/**
 * Test unikernels without internet: a multiboot ELF kernel built with gcc/as/ld that prints
 * `oak-test-kernel: cmdline=<its command line>` to COM1 and then, when its command line has
 * `loop`, prints `oak-test-kernel: tick` forever; with `idle`, prints `oak-test-kernel: idle` and
 * halts with interrupts off (an idle guest: its vCPU sleeps); otherwise it exits through isa-debug-exit
 * (port 0xf4) with the value of `exit=N` (default 0). Packed as a `.tar.gz` with `kernel` (and a
 * `files/hello.txt` share), cached under the temp dir by the source's hash.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const pexec = promisify(execFile);

const BOOT = `.section .text
.align 4
.long 0x1BADB002
.long 0
.long -(0x1BADB002)
.global _start
_start:
  mov $stack_top, %esp
  push %ebx
  push %eax
  call kmain
1: hlt
  jmp 1b
.section .bss
.align 16
.skip 8192
stack_top:
`;

const MAIN = `static inline void outb(unsigned short p, unsigned char v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(p)); }
static inline unsigned char inb(unsigned short p) { unsigned char v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(p)); return v; }
static void putc(char c) { while ((inb(0x3f8 + 5) & 0x20) == 0) {} outb(0x3f8, (unsigned char)c); }
static void puts(const char *s) { while (*s) putc(*s++); }
static int starts(const char *s, const char *p) { while (*p) if (*s++ != *p++) return 0; return 1; }
void kmain(unsigned magic, unsigned *mbi) {
  const char *cmd = "";
  if (magic == 0x2BADB002 && (mbi[0] & 4)) cmd = (const char *)mbi[4];
  puts("oak-test-kernel: cmdline="); puts(cmd); puts("\\n");
  int code = 0, loop = 0, idle = 0;
  for (const char *s = cmd; *s; s++) {
    if ((s == cmd || s[-1] == ' ') && starts(s, "exit=")) { code = 0; for (s += 5; *s >= '0' && *s <= '9'; s++) code = code * 10 + (*s - '0'); s--; }
    else if ((s == cmd || s[-1] == ' ') && starts(s, "loop")) loop = 1;
    else if ((s == cmd || s[-1] == ' ') && starts(s, "idle")) idle = 1;
  }
  if (idle) { puts("oak-test-kernel: idle\\n"); for (;;) __asm__ volatile("cli; hlt"); }
  if (loop) { puts("oak-test-kernel: looping\\n"); for (;;) { for (volatile unsigned i = 0; i < 50000000u; i++) {} puts("oak-test-kernel: tick\\n"); } }
  puts("oak-test-kernel: exiting\\n");
  outb(0xf4, (unsigned char)code);
  for (;;) __asm__ volatile("hlt");
}
`;

export interface TestKernel {
  /** the bare multiboot ELF */
  kernel: string;
  /** a .tar.gz with kernel and files/hello.txt */
  archive: string;
}

let built: Promise<TestKernel> | undefined;

export function buildTestKernel(): Promise<TestKernel> {
  built ??= build();
  return built;
}

async function build(): Promise<TestKernel> {
  const key = createHash('sha256').update(BOOT).update(MAIN).digest('hex').slice(0, 16);
  const dir = join(tmpdir(), `oak-test-kernel-${key}`);
  const out: TestKernel = { kernel: join(dir, 'kernel'), archive: join(dir, 'unikernel.tar.gz') };
  if (existsSync(out.archive)) return out;
  const tmp = `${dir}.${process.pid}.tmp`;
  await rm(tmp, { recursive: true, force: true });
  await mkdir(join(tmp, 'pkg', 'files'), { recursive: true });
  await writeFile(join(tmp, 'boot.S'), BOOT);
  await writeFile(join(tmp, 'k.c'), MAIN);
  await pexec('gcc', ['-m32', '-c', join(tmp, 'boot.S'), '-o', join(tmp, 'boot.o')]);
  await pexec('gcc', ['-m32', '-ffreestanding', '-fno-pic', '-fno-stack-protector', '-nostdlib', '-O2', '-c', join(tmp, 'k.c'), '-o', join(tmp, 'k.o')]);
  await pexec('ld', ['-m', 'elf_i386', '-z', 'noexecstack', '-Ttext', '0x100000', '-o', join(tmp, 'pkg', 'kernel'), join(tmp, 'boot.o'), join(tmp, 'k.o')]);
  await writeFile(join(tmp, 'pkg', 'files', 'hello.txt'), 'hello from the share\n');
  await pexec('tar', ['-czf', join(tmp, 'unikernel.tar.gz'), '-C', join(tmp, 'pkg'), 'kernel', 'files']);
  await rename(join(tmp, 'pkg', 'kernel'), join(tmp, 'kernel'));
  await rm(join(tmp, 'pkg'), { recursive: true, force: true });
  await rm(join(tmp, 'boot.S'));
  await rm(join(tmp, 'k.c'));
  await rename(tmp, dir).catch(async (e: unknown) => {
    await rm(tmp, { recursive: true, force: true });
    if (!existsSync(out.archive)) throw e;
  });
  return out;
}
