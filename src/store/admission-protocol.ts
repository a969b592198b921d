// Messages between the admission writer (admission-writer.ts, main thread)
// and its worker thread (admission-worker.ts).

/** One admission: write each file atomically (durable), then fsync each directory, in that order. */
export interface AdmissionJob {
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

export type FromAdmissionWorker = { type: 'ready' } | { type: 'done'; id: number; failure?: AdmissionFailure };
