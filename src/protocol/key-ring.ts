// The route-token key ring as the orchestrator hands it to the workers (and as RouteTokens
// takes it): a contract both sides import, so the data plane never imports the orchestrator.

export interface RingKey {
  /** 0..255, carried in clear in every token's header. */
  id: number;
  /** 32 bytes. */
  key: Uint8Array;
  /** ms since the epoch from which the key no longer opens tokens; absent = current. */
  retireAt?: number;
}

export interface KeyRing {
  keys: RingKey[];
  sealKeyId: number;
  /** True when the ring is a random key made at start (tokens die with the process). */
  ephemeral: boolean;
  /**
   * ms since the epoch until which format v1 tokens (sealed before the upgrade to v2) still
   * open: start + key grace; 0 when none can exist (a random key made at start).
   */
  v1OpensUntil: number;
}
