/** A drill that found a broken invariant: its message says which, `figures` what it did. */
export class DrillFailure extends Error {
  constructor(message: string, readonly figures: object) {
    super(message);
  }
}
