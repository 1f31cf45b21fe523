/**
 * A thin typed client for containerd's gRPC API: one channel over the unix socket, the service
 * definitions loaded from the .proto files that Debian's golang-github-containerd-containerd-dev
 * installs, and every call tagged with the `containerd-namespace` metadata.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import type * as Grpc from '@grpc/grpc-js';
import type * as ProtoLoader from '@grpc/proto-loader';

// loaded at the first client, not at start: a worker without containerd never pays for them
// (about 14 MB of resident memory on an idle NodeEngine)
const load = createRequire(import.meta.url);
let grpcModule: typeof Grpc | undefined;
let protoLoaderModule: typeof ProtoLoader | undefined;
const grpcLib = (): typeof Grpc => (grpcModule ??= load('@grpc/grpc-js') as typeof Grpc);
const protoLib = (): typeof ProtoLoader => (protoLoaderModule ??= load('@grpc/proto-loader') as typeof ProtoLoader);

export const DEFAULT_PROTO_ROOT = '/usr/share/gocode/src';
const API = 'github.com/containerd/containerd/api';
const FILES = [
  `${API}/services/containers/v1/containers.proto`,
  `${API}/services/content/v1/content.proto`,
  `${API}/services/images/v1/images.proto`,
  `${API}/services/snapshots/v1/snapshots.proto`,
  `${API}/services/tasks/v1/tasks.proto`,
  `${API}/services/version/v1/version.proto`,
];

const SERVICES = {
  containers: 'containerd.services.containers.v1.Containers',
  content: 'containerd.services.content.v1.Content',
  images: 'containerd.services.images.v1.Images',
  snapshots: 'containerd.services.snapshots.v1.Snapshots',
  tasks: 'containerd.services.tasks.v1.Tasks',
  version: 'containerd.services.version.v1.Version',
} as const;
export type ServiceName = keyof typeof SERVICES;

// ---- message shapes (only the fields used here) -------------------------------------------

export interface Timestamp { seconds: number; nanos: number }
export interface Any { type_url: string; value: Buffer }
export interface Descriptor { media_type: string; digest: string; size: number; annotations?: Record<string, string> }
export interface Mount { type: string; source: string; target?: string; options: string[] }
export interface Container {
  id: string;
  labels: Record<string, string>;
  image: string;
  runtime: { name: string; options?: Any | null } | null;
  spec: Any | null;
  snapshotter: string;
  snapshot_key: string;
  created_at?: Timestamp | null;
}
export type TaskStatus = 'UNKNOWN' | 'CREATED' | 'RUNNING' | 'STOPPED' | 'PAUSED' | 'PAUSING';
export interface Process {
  container_id: string;
  id: string;
  pid: number;
  status: TaskStatus;
  stdout: string;
  exit_status: number;
  exited_at: Timestamp | null;
}
export interface Image { name: string; labels: Record<string, string>; target: Descriptor }

/** every request/response pair this module calls */
export interface Calls {
  'containers.Get': [{ id: string }, { container: Container }];
  'containers.List': [{ filters: string[] }, { containers: Container[] }];
  'containers.Create': [{ container: Partial<Container> }, { container: Container }];
  'containers.Update': [{ container: Partial<Container>; update_mask?: { paths: string[] } }, { container: Container }];
  'containers.Delete': [{ id: string }, object];
  'images.Get': [{ name: string }, { image: Image | null }];
  'snapshots.Prepare': [{ snapshotter: string; key: string; parent: string; labels?: Record<string, string> }, { mounts: Mount[] }];
  'snapshots.Mounts': [{ snapshotter: string; key: string }, { mounts: Mount[] }];
  'snapshots.Stat': [{ snapshotter: string; key: string }, { info: { name: string; parent: string; kind: string } }];
  'snapshots.Remove': [{ snapshotter: string; key: string }, object];
  'tasks.Create': [{ container_id: string; rootfs: Mount[]; stdin?: string; stdout: string; stderr: string; terminal?: boolean }, { container_id: string; pid: number }];
  'tasks.Start': [{ container_id: string; exec_id?: string }, { pid: number }];
  'tasks.Get': [{ container_id: string; exec_id?: string }, { process: Process }];
  'tasks.List': [{ filter: string }, { tasks: Process[] }];
  'tasks.Kill': [{ container_id: string; exec_id?: string; signal: number; all: boolean }, object];
  'tasks.Delete': [{ container_id: string }, { id: string; pid: number; exit_status: number; exited_at: Timestamp | null }];
  'tasks.Wait': [{ container_id: string; exec_id?: string }, { exit_status: number; exited_at: Timestamp | null }];
  'version.Version': [object, { version: string; revision: string }];
}
export type CallName = keyof Calls;

interface MethodDef {
  path: string;
  requestSerialize: (v: unknown) => Buffer;
  responseDeserialize: (b: Buffer) => unknown;
}

let cachedDefs: { root: string; defs: ProtoLoader.PackageDefinition } | undefined;

function loadDefinitions(protoRoot: string): ProtoLoader.PackageDefinition {
  if (cachedDefs?.root === protoRoot) return cachedDefs.defs;
  const missing = FILES.find((f) => !existsSync(join(protoRoot, f)));
  if (missing) throw new Error(`containerd API proto file not found: ${join(protoRoot, missing)} (install golang-github-containerd-containerd-dev)`);
  const defs = protoLib().loadSync(FILES, {
    includeDirs: [protoRoot, join(protoRoot, 'github.com/gogo/protobuf'), join(protoRoot, 'github.com/gogo/protobuf/protobuf')],
    keepCase: true,
    longs: Number,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  cachedDefs = { root: protoRoot, defs };
  return defs;
}

export class ContainerdClient {
  readonly socket: string;
  readonly namespace: string;
  private readonly client: Grpc.Client;
  private readonly methods = new Map<string, MethodDef>();
  private readonly defs: ProtoLoader.PackageDefinition;

  constructor(socket: string, namespace: string, protoRoot = DEFAULT_PROTO_ROOT) {
    this.socket = socket;
    this.namespace = namespace;
    this.defs = loadDefinitions(protoRoot);
    const grpc = grpcLib();
    this.client = new grpc.Client(`unix://${socket}`, grpc.credentials.createInsecure(), {
      'grpc.max_receive_message_length': 64 * 1024 * 1024,
    });
  }

  private method(service: ServiceName, name: string): MethodDef {
    const key = `${service}.${name}`;
    let m = this.methods.get(key);
    if (!m) {
      const svc = this.defs[SERVICES[service]] as Record<string, MethodDef> | undefined;
      const def = svc?.[name];
      if (!def) throw new Error(`unknown containerd method ${key}`);
      m = def;
      this.methods.set(key, m);
    }
    return m;
  }

  private metadata(): Grpc.Metadata {
    const md = new (grpcLib().Metadata)();
    md.set('containerd-namespace', this.namespace);
    return md;
  }

  /** a unary call; `timeoutMs` 0 = no deadline (for Wait) */
  call<K extends CallName>(name: K, req: Calls[K][0], opts: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<Calls[K][1]> {
    const [service, method] = name.split('.') as [ServiceName, string];
    const def = this.method(service, method);
    const timeoutMs = opts.timeoutMs ?? 30_000;
    const callOpts: Grpc.CallOptions = timeoutMs > 0 ? { deadline: Date.now() + timeoutMs } : {};
    return new Promise((resolve, reject) => {
      const call = this.client.makeUnaryRequest(
        def.path,
        def.requestSerialize,
        def.responseDeserialize,
        req,
        this.metadata(),
        callOpts,
        (err, res) => {
          opts.signal?.removeEventListener('abort', onAbort);
          if (err) reject(err);
          else resolve(res as Calls[K][1]);
        },
      );
      const onAbort = (): void => call.cancel();
      opts.signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** reads a whole content blob (Content.Read is server-streaming) */
  readContent(digest: string, timeoutMs = 30_000): Promise<Buffer> {
    const def = this.method('content', 'Read');
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      const stream = this.client.makeServerStreamRequest(
        def.path,
        def.requestSerialize,
        def.responseDeserialize,
        { digest, offset: 0, size: 0 },
        this.metadata(),
        { deadline: Date.now() + timeoutMs },
      );
      stream.on('data', (msg: { data: Buffer }) => chunks.push(msg.data));
      stream.on('error', reject);
      stream.on('end', () => resolve(Buffer.concat(chunks)));
    });
  }

  close(): void {
    this.client.close();
  }
}

/** gRPC status code of an error (NOT_FOUND = 5, ALREADY_EXISTS = 6, ...) or undefined */
export function grpcCode(err: unknown): number | undefined {
  if (typeof err === 'object' && err !== null && 'code' in err && typeof (err as { code: unknown }).code === 'number') {
    return (err as { code: number }).code;
  }
  return undefined;
}

/** gRPC status codes (fixed by the gRPC spec; named here so the library loads only with a client) */
export const NOT_FOUND = 5;
export const ALREADY_EXISTS = 6;
