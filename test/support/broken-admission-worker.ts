// An admission writer worker (as src/store/admission-worker.ts) that cannot
// start: its module throws while loading, as a module missing from a build or
// a thread that cannot get its memory would end, before it answers 'ready'.
throw new Error('admission writer module failed to load (test)');
