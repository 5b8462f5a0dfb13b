// The peer registry, in the default run order. See ./common.js for what a peer exports.

import * as tether from './tether.js';
import * as haproxy from './haproxy.js';
import * as nginx from './nginx.js';
import * as httpProxy from './http-proxy.js';
import * as haproxySource from './haproxy-source.js';
import * as nginxHash from './nginx-hash.js';

// Variants that run only in some scenarios (their `scenarios` export) come last.
export const peers = [tether, haproxy, nginx, httpProxy, haproxySource, nginxHash];
