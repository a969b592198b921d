// Messages between the admission writer (admission-writer.ts, main thread)
// and its worker thread (admission-worker.ts).

/** New tasks' directories: each made (mode 0755, no fsync: commit's directory fsyncs make it durable). */
export interface MkdirJob {
  type: 'mkdir';
  id: number;
  dirs: string[];
}

/** One admission: write each file atomically (durable), then fsync each directory, in that order. */
export interface AdmissionJob {
  type: 'commit';
  id: number;
  files: { path: string; body: string }[];
  /** fsynced after every file is renamed into place: the files' directories and their parent. */
  syncDirs: string[];
}

export interface AdmissionFailure {
  message: string;
  /** The failed system call's code ('ENOSPC', ...), which decides the status the client gets. */
  code?: string;
  /** The index in `files` of the file whose write failed; undefined when a directory's fsync failed. */
  file?: number;
}

export type ToAdmissionWorker = MkdirJob | AdmissionJob;

export type FromAdmissionWorker =
  | { type: 'ready' }
  | { type: 'done'; id: number; failure?: AdmissionFailure }
  /** A MkdirJob's outcome per directory (undefined: made), in its order. */
  | { type: 'made'; id: number; failures: (AdmissionFailure | undefined)[] };
