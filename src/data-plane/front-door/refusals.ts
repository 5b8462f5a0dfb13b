// Why the HTTP front door refused a request before the request path saw it: one metric label
// each (tether_front_door_refusals_total{reason}), one counter slot each in shared memory.
import type { HeadErrorReason } from './request-head.js';

export type RefusalReason = HeadErrorReason | 'bad_content_length' | 'te_and_content_length' | 'bad_transfer_encoding' | 'bad_chunk' | 'connect_method' | 'head_timeout';

export const REFUSAL_REASONS: readonly RefusalReason[] = [
  'bad_request_line', 'bad_method', 'bad_target', 'bad_version', 'h2_preface', 'bare_lf', 'bare_cr', 'control_byte', 'obs_fold',
  'space_before_colon', 'bad_field_name', 'head_too_large', 'too_many_headers', 'bad_content_length', 'te_and_content_length',
  'bad_transfer_encoding', 'bad_chunk', 'connect_method', 'head_timeout',
];
