// The error a promise must reject with, checked to be of the expected class (a resolve fails the test).
import { expect } from 'vitest';

export async function rejectionOf<E extends Error>(promise: Promise<unknown>, type: abstract new (...args: never[]) => E): Promise<E> {
  try {
    await promise;
  } catch (err) {
    expect(err).toBeInstanceOf(type);
    return err as E;
  }
  throw new Error(`expected a rejection with ${type.name}`);
}
