/** What evaluation and the service need from any model: full-catalog scores for input sequences. */
export interface Recommender {
  /** Scorable items are 1..numItems (0 is padding). */
  readonly numItems: number;
  /**
   * Scores every item for each input sequence (item indices, most recent last; implementations truncate to their
   * own maximum length). out is inputs.length x (numItems + 1), row-major; column 0 (padding) gets -Infinity.
   * Items the model cannot score (for example cold items of an ID-only model) get -Infinity.
   */
  score(inputs: readonly Int32Array[], out: Float32Array): void;
}
