// The worker's millisecond clock for deadlines and timestamps on the request path. It is
// refreshed at every event that starts work (a request, upstream bytes, a sweep), so it is
// current wherever it is read, and the ~7 reads a request makes cost a property load each
// instead of a Date.now() call.
export const clock = { now: Date.now() };
