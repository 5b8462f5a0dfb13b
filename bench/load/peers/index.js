// The peer registry, in the default run order. See ./common.js for what a peer exports.

import * as tether from './tether.js';
import * as haproxy from './haproxy.js';
import * as nginx from './nginx.js';
import * as httpProxy from './http-proxy.js';

export const peers = [tether, haproxy, nginx, httpProxy];
