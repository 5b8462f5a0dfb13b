// The scenario registry, in the order they run by default. A scenario module exports
// name, description and prepare({ url, peer, backendNames }) → { cookies, checks }:
// `cookies` are the Cookie header values wrk sends (one per wrk thread, round robin; none
// for a cookie-less client), `checks` what was verified before the run (kept in results).

import * as stickyHit from './sticky-hit.js';
import * as firstVisit from './first-visit.js';

export const scenarios = [stickyHit, firstVisit];
